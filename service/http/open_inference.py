"""The Open Inference Protocol (V2 REST: KServe, Triton, Seldon, OpenVINO), spoken at `/v2` beside `/predict`:

    GET  /v2/health/live, /v2/health/ready          {"live": true}, {"ready": true}
    GET  /v2                                        the server: name, version, extensions
    GET  /v2/models/{m}[/versions/{v}]              the model: its inputs and outputs (name, datatype, shape)
    GET  /v2/models/{m}[/versions/{v}]/ready        200 when that model (and version) answers, 404 otherwise
    POST /v2/models/{m}[/versions/{v}]/infer        {"inputs": [{name, shape, datatype, data}]} -> {"outputs": [...]}

An inference request's tensors are checked by the same code as /predict's rows (service.http.rows) and predicted
through the same batching: `predict` is the service's, handed to the app when a worker starts (`serve`). Tensor
data may be flat (row-major) or nested, or binary (the protocol's binary extension, tritonclient's default);
answers are JSON. Errors are the protocol's `{"error": "..."}` (service.http.error_rewrite keeps them so), 400
for a bad request, 404 for a model or version that does not answer here (the message names the one that does).
A request for another version than the one answering is refused: a version is never answered by another.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.http.rows import RequestError, parse_rows
from service.models.contract import ModelContract, Outputs, Rows, Tensor

PREFIX = "/v2"
HEADER_LENGTH = "inference-header-content-length"  # the binary extension: the JSON header's length in bytes
DATATYPES = {
    "bool": "BOOL", "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32", "uint64": "UINT64",
    "int8": "INT8", "int16": "INT16", "int32": "INT32", "int64": "INT64",
    "float16": "FP16", "float32": "FP32", "float64": "FP64",
}  # fmt: skip
NUMPY_OF = {datatype: np.dtype(name) for name, datatype in DATATYPES.items()}


class Served(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def contract(self) -> ModelContract: ...


Predict = Callable[[Rows], Awaitable[tuple[Served, Outputs]]]


class ProtocolError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def datatype(tensor: Tensor) -> str:
    return "BYTES" if tensor.strings else DATATYPES[tensor.dtype.name]


def metadata(served: Served, platform: str) -> dict[str, Any]:
    """A model's metadata as the protocol gives it: names, datatypes, shapes with -1 for the batch."""

    def describe(tensor: Tensor) -> dict[str, Any]:
        return {"name": tensor.name, "datatype": datatype(tensor), "shape": [-1, *tensor.shape]}

    contract = served.contract
    return {
        "name": served.name,
        "versions": [served.version],
        "platform": platform,
        "inputs": [describe(tensor) for tensor in contract.inputs],
        "outputs": [describe(output.tensor) for output in contract.outputs],
    }


def parse_request(
    body: bytes, header_length: str | None, contract: ModelContract, max_rows: int
) -> tuple[Rows, list[str], Any]:
    """The request's rows by input name, the outputs asked for (all by default) and its id; ProtocolError."""
    raw, binary = body, b""
    if header_length is not None:
        try:
            length = int(header_length)
        except ValueError:
            raise ProtocolError(f"{HEADER_LENGTH} is not a number") from None
        if not 0 <= length <= len(body):
            raise ProtocolError(f"{HEADER_LENGTH} {length} is outside the body of {len(body)} bytes")
        raw, binary = body[:length], body[length:]
    try:
        request = json.loads(raw)
    except ValueError:
        raise ProtocolError("the body is not valid JSON") from None
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list):
        raise ProtocolError('an inference request is an object with "inputs": a list of tensors')
    tensors = {tensor.name: tensor for tensor in contract.inputs}
    given: dict[str, Any] = {}
    offset = 0
    for item in request["inputs"]:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ProtocolError('each input is an object with a "name", a "shape", a "datatype" and "data"')
        name = item["name"]
        if name not in tensors:
            raise ProtocolError(f"unknown input {name[:60]!r}; the model takes {sorted(tensors)}")
        if name in given:
            raise ProtocolError(f"input {name!r} is given twice")
        values, offset = _values(item, tensors[name], binary, offset)
        given[name] = values
    missing = [name for name in tensors if name not in given]
    if missing:
        raise ProtocolError(f"missing input {missing[0]!r}; the model takes {sorted(tensors)}")
    if offset != len(binary):
        raise ProtocolError(f"{len(binary) - offset} bytes of binary data belong to no input")
    counts = {len(rows) for rows in given.values()}
    if len(counts) > 1:
        raise ProtocolError("every input needs the same number of rows (the first dimension of its shape)")
    rows: Rows = {}
    for name, values in given.items():
        try:
            rows[name] = parse_rows(values, tensors[name], max_rows, f"input {name!r}, ")
        except RequestError as exc:
            raise ProtocolError(str(exc)) from None
    return rows, _outputs_asked(request.get("outputs"), contract), request.get("id")


def _values(item: dict[str, Any], tensor: Tensor, binary: bytes, offset: int) -> tuple[list[Any], int]:
    """One input's rows as nested lists of its per-row shape (what /predict's rows check takes)."""
    where = f"input {tensor.name!r}"
    shape = item.get("shape")
    if not isinstance(shape, list) or not shape or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ProtocolError(f'{where}: "shape" must be a list of sizes, the rows first')
    declared = item.get("datatype")
    if declared != datatype(tensor) and not (declared in NUMPY_OF and not tensor.strings):
        raise ProtocolError(f"{where}: datatype {str(declared)[:20]!r}; the model takes {datatype(tensor)}")
    count = int(np.prod(shape))
    per_row = int(np.prod(shape[1:]))
    if per_row != tensor.width:
        raise ProtocolError(f"{where}: shape {shape}; the model takes rows of shape {[-1, *tensor.shape]}")
    size = (item.get("parameters") or {}).get("binary_data_size")
    if size is not None:
        flat, offset = _binary(binary, offset, int(size), declared, count, where)
    else:
        data = item.get("data")
        if not isinstance(data, list):
            raise ProtocolError(f'{where}: "data" must be a list of values (or binary_data_size given)')
        flat = _flatten(data)
        if len(flat) != count:
            raise ProtocolError(f"{where}: {len(flat)} values for shape {shape}")
    rows = shape[0]
    if tensor.shape in ((), (1,)) or per_row == 1:
        nested = [flat[i : i + 1] if tensor.shape else flat[i] for i in range(rows)]
    elif len(tensor.shape) == 1:
        nested = [flat[i * per_row : (i + 1) * per_row] for i in range(rows)]
    else:
        nested = np.array(flat, dtype=object).reshape(rows, *tensor.shape).tolist()
    return nested, offset


def _flatten(data: list[Any]) -> list[Any]:
    if not any(isinstance(value, list) for value in data):
        return data
    flat: list[Any] = []
    for value in data:
        flat.extend(_flatten(value) if isinstance(value, list) else [value])
    return flat


def _binary(
    binary: bytes, offset: int, size: int, declared: Any, count: int, where: str
) -> tuple[list[Any], int]:
    chunk = binary[offset : offset + size]
    if size < 0 or len(chunk) != size:
        raise ProtocolError(f"{where}: binary_data_size {size} is past the end of the body")
    if declared == "BYTES":
        values, at = [], 0
        while at < len(chunk):
            (length,) = struct.unpack_from("<I", chunk, at)
            values.append(chunk[at + 4 : at + 4 + length].decode("utf-8", errors="replace"))
            at += 4 + length
    else:
        dtype = NUMPY_OF[declared].newbyteorder("<")
        if size != count * dtype.itemsize:
            raise ProtocolError(f"{where}: {size} bytes for {count} {declared} values")
        values = np.frombuffer(chunk, dtype=dtype).tolist()
    if len(values) != count:
        raise ProtocolError(f"{where}: {len(values)} values for {count}")
    return values, offset + size


def _outputs_asked(asked: Any, contract: ModelContract) -> list[str]:
    names = [output.name for output in contract.outputs]
    if asked is None:
        return names
    if not isinstance(asked, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in asked
    ):
        raise ProtocolError('"outputs" is a list of objects with a "name"')
    unknown = [o["name"] for o in asked if o["name"] not in names]
    if unknown:
        raise ProtocolError(f"unknown output {unknown[0][:60]!r}; the model answers {names}")
    return [o["name"] for o in asked]


def response(served: Served, outputs: Outputs, asked: Sequence[str], request_id: Any) -> dict[str, Any]:
    by_name = {output.name: output for output in served.contract.outputs}
    answer: dict[str, Any] = {
        "model_name": served.name,
        "model_version": served.version,
        "outputs": [
            {
                "name": name,
                "datatype": datatype(by_name[name].tensor),
                "shape": list(outputs[name].shape),
                "data": outputs[name].ravel().tolist(),
            }
            for name in asked
        ],
    }
    if request_id is not None:
        answer["id"] = request_id
    return answer


def inference_app(max_rows: int, platform: str) -> Starlette:
    """The protocol's routes; `serve` gives them the service's model source and prediction in each worker."""
    app = Starlette(routes=_routes(max_rows, platform))
    return app


def serve(app: Starlette, current: Callable[[], Served], predict: Predict) -> None:
    app.state.current, app.state.predict = current, predict


def error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message[:500]}, status)


def _served(request: Request) -> Served:
    """The model answering here, if the request names it (and its version, when it names one)."""
    served: Served = request.app.state.current()
    name, version = request.path_params["model"], request.path_params.get("version")
    if name != served.name:
        raise ProtocolError(f"no model {name[:60]!r} here; {served.name!r} answers", 404)
    if version is not None and version != served.version:
        raise ProtocolError(
            f"version {version[:20]!r} of {served.name!r} does not answer here; version {served.version} does",
            404,
        )
    return served


def _routes(max_rows: int, platform: str) -> list[Route]:
    async def live(request: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(request: Request) -> Response:
        return JSONResponse({"ready": True})

    async def server(request: Request) -> Response:
        return JSONResponse({"name": "nbship", "version": "1", "extensions": ["binary_tensor_data"]})

    async def model(request: Request) -> Response:
        try:
            return JSONResponse(metadata(_served(request), platform))
        except ProtocolError as exc:
            return error(str(exc), exc.status)

    async def model_ready(request: Request) -> Response:
        try:
            served = _served(request)
        except ProtocolError as exc:
            return error(str(exc), exc.status)
        return JSONResponse({"name": served.name, "ready": True})

    async def infer(request: Request) -> Response:
        try:
            contract = _served(request).contract
            body = await request.body()
            rows, asked, request_id = parse_request(
                body, request.headers.get(HEADER_LENGTH), contract, max_rows
            )
            served, outputs = await request.app.state.predict(rows)
        except ProtocolError as exc:
            return error(str(exc), exc.status)
        return JSONResponse(response(served, outputs, asked, request_id))

    routes = [
        Route("/health/live", live),
        Route("/health/ready", ready),
        Route("/", server),  # `GET /v2`: BarePath makes it `/v2/`
    ]
    for at in ("/models/{model}", "/models/{model}/versions/{version}"):
        routes += [
            Route(at, model),
            Route(f"{at}/ready", model_ready),
            Route(f"{at}/infer", infer, methods=["POST"]),
        ]
    return routes
