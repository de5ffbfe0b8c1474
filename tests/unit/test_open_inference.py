"""The Open Inference Protocol's translation (service.http.open_inference): tensors in JSON (flat or nested) and in
the binary extension become the rows /predict's checks take; outputs go back as the protocol's tensors; every
problem is a 400 saying what, in the protocol's `{"error": ...}`."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from service.http.open_inference import HEADER_LENGTH, ProtocolError, metadata, parse_request, response
from service.models.contract import STRING, ModelContract, Output, Tensor

F32 = np.dtype(np.float32)
TABLE = ModelContract(
    (Tensor((2,), F32, "measures"), Tensor((1,), STRING, "region")),
    (
        Output(Tensor((3,), F32, "cultivar"), "classification"),
        Output(Tensor((1,), F32, "quality"), "regression"),
    ),
)


def body(*inputs: dict, **extra: object) -> bytes:
    return json.dumps({"inputs": list(inputs), **extra}).encode()


MEASURES = {"name": "measures", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]}
REGION = {"name": "region", "shape": [2, 1], "datatype": "BYTES", "data": ["north", "süd"]}


def test_flat_or_nested_data_become_each_inputs_rows() -> None:
    for measures in (MEASURES, MEASURES | {"data": [[1, 2], [3, 4]]}):
        rows, asked, request_id = parse_request(body(measures, REGION, id="r-1"), None, TABLE, 8)
        np.testing.assert_array_equal(rows["measures"], np.array([[1, 2], [3, 4]], F32))
        assert rows["region"].dtype == STRING and rows["region"].tolist() == [["north"], ["süd"]]
        assert (asked, request_id) == (["cultivar", "quality"], "r-1")


def test_binary_tensors_as_tritonclient_sends_them_by_default() -> None:
    numbers = np.array([1, 2, 3, 4], "<f4").tobytes()
    strings = b"".join(struct.pack("<I", len(s.encode())) + s.encode() for s in ("north", "süd"))
    header = body(
        {k: v for k, v in MEASURES.items() if k != "data"}
        | {"parameters": {"binary_data_size": len(numbers)}},
        {k: v for k, v in REGION.items() if k != "data"} | {"parameters": {"binary_data_size": len(strings)}},
    )
    rows, _, _ = parse_request(header + numbers + strings, str(len(header)), TABLE, 8)
    assert rows["measures"].tolist() == [[1, 2], [3, 4]] and rows["region"].tolist() == [["north"], ["süd"]]


@pytest.mark.parametrize(
    ("request_body", "message"),
    [
        (b"{not json", "the body is not valid JSON"),
        (body(MEASURES), "missing input 'region'"),
        (body(MEASURES, REGION, {"name": "x"}), "unknown input 'x'"),
        (
            body(MEASURES | {"shape": [2, 3]}, REGION),
            "input 'measures': shape [2, 3]; the model takes rows of shape [-1, 2]",
        ),
        (body(MEASURES | {"data": [1, 2, 3]}, REGION), "input 'measures': 3 values for shape [2, 2]"),
        (
            body(MEASURES | {"data": [1, 2, "x", 4]}, REGION),
            "input 'measures', row 1, field 0: expected a number",
        ),
        (
            body(MEASURES, REGION | {"datatype": "FP32"}),
            "input 'region': datatype 'FP32'; the model takes BYTES",
        ),
        (body(MEASURES, REGION, outputs=[{"name": "nope"}]), "unknown output 'nope'"),
        (
            body(MEASURES, REGION | {"shape": [1, 1], "data": ["n"]}),
            "every input needs the same number of rows",
        ),
    ],
)
def test_what_is_wrong_is_said(request_body: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message.replace("[", r"\[").replace("]", r"\]")) as caught:
        parse_request(request_body, None, TABLE, 8)
    assert caught.value.status == 400


def test_answers_and_metadata_in_the_protocols_form() -> None:
    class Served:
        name, version, contract = "wine", "3", TABLE

    outputs = {"cultivar": np.array([[0.2, 0.7, 0.1]], F32), "quality": np.array([[6.5]], F32)}
    answer = response(Served(), outputs, ["quality"], "r-2")
    assert answer == {
        "model_name": "wine",
        "model_version": "3",
        "outputs": [{"name": "quality", "datatype": "FP32", "shape": [1, 1], "data": [6.5]}],
        "id": "r-2",
    }
    described = metadata(Served(), "tensorflow_keras")
    assert described["inputs"] == [
        {"name": "measures", "datatype": "FP32", "shape": [-1, 2]},
        {"name": "region", "datatype": "BYTES", "shape": [-1, 1]},
    ]
    assert HEADER_LENGTH == "inference-header-content-length"
