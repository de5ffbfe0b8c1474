"""A version's held-out reference (service/models/reference.py), for every form of contract the service takes:
live rows and records give the same features the reference describes, numbers and categories as Evidently
tells them apart, texts as their length and their share of held-out words."""

from __future__ import annotations

import json

import numpy as np
import pytest
from support.models import FORMS

from service.models import reference
from service.models.contract import STRING, ModelContract, Outputs, Rows


def rows_for(contract: ModelContract, n: int, seed: int = 0) -> Rows:
    rng = np.random.default_rng(seed)
    rows: Rows = {}
    words = np.array(["good", "bad", "wine", "dry", "sweet", "red", "white", "oak", "fruit", "tannin"])
    for tensor in contract.inputs:
        shape = (n, *tensor.shape)
        if tensor.strings:
            texts = [" ".join(rng.choice(words, rng.integers(2, 9))) for _ in range(int(np.prod(shape)))]
            rows[tensor.name] = np.array(texts, dtype=STRING).reshape(shape)
        else:
            rows[tensor.name] = (rng.random(shape) * 16).astype(tensor.dtype)
    return rows


def outputs_for(contract: ModelContract, n: int, seed: int = 0) -> Outputs:
    rng = np.random.default_rng(seed + 1)
    outputs: Outputs = {}
    for output in contract.outputs:
        shape = (n, *output.tensor.shape)
        values = rng.random(shape).astype(np.float32)
        if output.task == "classification" and not output.binary:
            values = values / values.sum(axis=1, keepdims=True)
        outputs[output.name] = values
    return outputs


def summaries(contract: ModelContract, outputs: Outputs) -> dict:
    return {o.name: reference.summary(o, outputs[o.name]) for o in contract.outputs}


@pytest.mark.parametrize("form", sorted(FORMS))
def test_live_rows_give_the_features_the_reference_describes(form: str) -> None:
    contract = FORMS[form]
    held, live = rows_for(contract, 300), rows_for(contract, 40, seed=5)
    made = json.loads(
        json.dumps(reference.make(contract, held, summaries(contract, outputs_for(contract, 300))))
    )
    assert made["rows"] == 300
    vocabularies = reference.vocabularies(made)
    live_inputs = reference.input_features(contract, live, vocabularies)
    assert list(live_inputs) == list(made["inputs"])
    assert all(len(values) == 40 for values in live_inputs.values())
    live_outputs = reference.output_features(contract, summaries(contract, outputs_for(contract, 40, seed=5)))
    assert list(live_outputs) == list(made["outputs"])
    for name, described in {**made["inputs"], **made["outputs"]}.items():
        assert described["kind"] in ("number", "category"), name
        if described["kind"] == "number":
            sample = described["sample"]
            assert sample == sorted(sample) and len(sample) <= reference.SAMPLE
            assert described["low"] == sample[0] and described["high"] == sample[-1]
            assert len(described["bins"]) == reference.BINS + 1
        else:
            assert sum(described["counts"].values()) == 300


def test_features_are_named_as_the_contract_names_them() -> None:
    wine = FORMS["wine"]
    made = reference.make(wine, rows_for(wine, 50), summaries(wine, outputs_for(wine, 50)))
    assert list(made["inputs"])[:2] == ["alcohol", "malic_acid"]
    assert list(made["outputs"]) == ["cultivar:class", "cultivar:confidence"]
    assert set(made["outputs"]["cultivar:class"]["counts"]) <= {"class_0", "class_1", "class_2"}
    image = FORMS["image"]
    assert list(reference.input_features(image, rows_for(image, 3)))[:2] == ["image[0,0,0]", "image[0,1,0]"]
    notes = FORMS["notes"]
    made = reference.make(notes, rows_for(notes, 50), summaries(notes, outputs_for(notes, 50)))
    assert list(made["inputs"])[-2:] == ["note:words", "note:known_words"]
    assert list(made["outputs"]) == ["cultivar:class", "cultivar:confidence", "alcohol"]
    halves = FORMS["halves"]
    assert list(reference.output_features(halves, summaries(halves, outputs_for(halves, 4))))[:2] == [
        "tags:0",
        "tags:1",
    ]


def test_numbers_stay_numbers_and_an_unknown_word_lowers_the_known_share() -> None:
    assert reference.describe(np.array([0.0, 0.0, 0.0, 16.0]))["sample"] == [0.0, 0.0, 0.0, 16.0]
    classes = np.array(["0", "1", "1", "7"], dtype=object)
    assert reference.describe(classes)["counts"] == {"1": 2, "0": 1, "7": 1}
    notes = FORMS["notes"]
    held = rows_for(notes, 100)
    made = reference.make(notes, held, summaries(notes, outputs_for(notes, 100)))
    live = {
        "measurements": held["measurements"][:2],
        "note": np.array(["good red wine", "quantum flux wine"], dtype=STRING),
    }
    share = reference.input_features(notes, live, reference.vocabularies(made))["note:known_words"]
    assert share.tolist() == [1.0, pytest.approx(1 / 3)]


def test_a_large_input_is_summed_up_per_row() -> None:
    from service.models.contract import Tensor

    big = ModelContract.single(
        "classification",
        Tensor((40, 40, 1), np.dtype(np.float32), "scan"),
        Tensor((2,), np.dtype(np.float32), "y"),
    )
    features = reference.input_features(big, rows_for(big, 5))
    assert list(features) == ["scan:mean", "scan:std"]
