"""What a version's inputs and outputs looked like on its own held-out rows: the reference live rows are compared
with (`python -m pipeline monitor`), made once when the version is logged and stored in its model folder
(`evidence/reference.json`), so it travels with the version to the registry, the package and the image.

Features are named as the monitor shows them, and made from live rows and records by the same functions
(`input_features`, `output_features`), so both sides of a comparison are the same quantity:
- a number input: one feature per value (`pixels[3]`, or the contract's feature name), up to MAX_VALUES values an
  input; a larger input (an image of more values) is summed up per row: `pixels:mean`, `pixels:std`;
- a string input: its values as categories, or, when values are texts (more than TEXT_WORDS words on average),
  the text's length in words (`note:words`) and the share of its words found in the held-out texts' vocabulary
  (`note:known_words`);
- each output: the class answered and the confidence (classifiers), each class on or off (multi-label), each
  value (regressions).

A number feature keeps a sample of at most SAMPLE held-out values (sorted: the KS test and the quantiles read
it), its range and quantile bins; a category (strings, classes) keeps its frequencies (the most frequent
MAX_CATEGORIES, the rest as OTHER). Numbers stay numbers even when the held-out rows hold few distinct values
(Evidently tests a number column of at most 5 values as categories): a value they never held is not a new
category (a digits pixel that is 0 in nearly every held-out row and 3 in a few served ones is not drift).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from service.models.contract import ModelContract, Output, Rows

FILE = "evidence/reference.json"
FORMAT = 1
SAMPLE = 1000  # held-out values a number feature keeps, at most
TOTAL_SAMPLE = 200_000  # ... and all of a version's features together (a served process holds them)
MAX_VALUES = 1024
MAX_CATEGORIES = 50
TEXT_WORDS = 3.0
VOCABULARY = 5000
OTHER = "(other)"
BINS = 10


def input_features(
    contract: ModelContract, rows: Rows, vocabularies: Mapping[str, set[str]] | None = None
) -> dict[str, Any]:
    """Each input feature's values, one a row (numbers as float64, strings as str). `vocabularies`: the held-out
    vocabulary of each text input, by the reference; None while the reference is made (then a string column is a
    text when its values have more than TEXT_WORDS words on average)."""
    features: dict[str, Any] = {}
    for tensor in contract.inputs:
        values = np.asarray(rows[tensor.name])
        n = len(values)
        if tensor.strings:
            strings = values.reshape(n, -1)
            for j in range(strings.shape[1]):
                name = tensor.name if strings.shape[1] == 1 else f"{tensor.name}[{j}]"
                texts = [str(v) for v in strings[:, j]]
                if name in vocabularies if vocabularies is not None else _is_text(texts):
                    words = [text.lower().split() for text in texts]
                    known = vocabularies.get(name, set()) if vocabularies is not None else _vocabulary(texts)
                    features[f"{name}:words"] = np.array([len(w) for w in words], dtype=np.float64)
                    features[f"{name}:known_words"] = np.array(
                        [sum(word in known for word in w) / len(w) if w else 1.0 for w in words]
                    )
                else:
                    features[name] = np.array(texts, dtype=object)
            continue
        flat = values.reshape(n, -1).astype(np.float64)
        if flat.shape[1] > MAX_VALUES:
            features[f"{tensor.name}:mean"] = flat.mean(axis=1)
            features[f"{tensor.name}:std"] = flat.std(axis=1)
            continue
        names = _value_names(contract, tensor.name, tensor.shape, flat.shape[1])
        for j, name in enumerate(names):
            features[name] = flat[:, j]
    return features


def output_features(
    contract: ModelContract, summaries: Mapping[str, Mapping[str, list[Any]]]
) -> dict[str, Any]:
    """Each output feature's values, one a row, from each output's summary (`summary`)."""
    features: dict[str, Any] = {}
    for output in contract.outputs:
        parts = summaries[output.name]
        if output.task == "regression":
            values = np.asarray(parts["value"], dtype=np.float64)
            values = values.reshape(len(values), -1)
            for j, name in enumerate(_output_value_names(output, values.shape[1])):
                features[name] = values[:, j]
            continue
        if output.task == "multilabel":
            n_classes = output.n_classes or 0
            on = np.zeros((len(parts["labels"]), n_classes), dtype=bool)
            for i, labels in enumerate(parts["labels"]):
                on[i, labels] = True
            for k in range(n_classes):
                features[f"{output.name}:{_class_name(output, k)}"] = np.where(on[:, k], "on", "off").astype(
                    object
                )
        else:
            features[f"{output.name}:class"] = np.array(
                [_class_name(output, k) for k in parts["class"]], dtype=object
            )
        features[f"{output.name}:confidence"] = np.asarray(parts["confidence"], dtype=np.float64)
    return features


def make(
    contract: ModelContract, rows: Rows, summaries: Mapping[str, Mapping[str, list[Any]]]
) -> dict[str, Any]:
    """The reference of held-out `rows` and the version's own answers for them (summed up per output)."""
    texts = _texts(contract, rows)
    vocabularies = {name: _vocabulary(values) for name, values in texts.items()}
    inputs = input_features(contract, rows, vocabularies)
    size = max(100, min(SAMPLE, TOTAL_SAMPLE // max(1, len(inputs))))
    reference: dict[str, Any] = {
        "format": FORMAT,
        "rows": len(next(iter(rows.values()))),
        "inputs": {name: describe(values, size) for name, values in inputs.items()},
        "outputs": {name: describe(values) for name, values in output_features(contract, summaries).items()},
        "vocabularies": {name: sorted(words) for name, words in vocabularies.items()},
    }
    return reference


def summary(output: Output, values: np.ndarray) -> dict[str, list[Any]]:
    """An output's answer in short, one entry a row (each list as long as `values`)."""
    if output.task == "regression":
        return {"value": np.asarray(values, dtype=np.float64).tolist()}
    probabilities = output.probabilities(values)
    if output.task == "multilabel":
        on = np.asarray(values) >= output.threshold
        confidence = np.abs(np.asarray(values, dtype=np.float64) - 0.5).mean(axis=1) * 2
        return {"labels": [np.flatnonzero(row).tolist() for row in on], "confidence": confidence.tolist()}
    classes = probabilities.argmax(axis=1)
    return {"class": classes.tolist(), "confidence": probabilities.max(axis=1).tolist()}


def describe(values: np.ndarray, sample_size: int = SAMPLE) -> dict[str, Any]:
    """A feature's held-out distribution: a number's sample (evenly spaced order statistics, at most
    `sample_size`), range and bins, or a category's frequencies."""
    if values.dtype != object:
        finite = np.sort(values[np.isfinite(values)])
        size = min(len(finite), sample_size)
        sample = finite[np.linspace(0, len(finite) - 1, size).astype(int)] if size < len(finite) else finite
        return {
            "kind": "number",
            "rows": len(values),
            "low": float(finite[0]),
            "high": float(finite[-1]),
            "bins": np.quantile(finite, np.linspace(0, 1, BINS + 1)).tolist(),
            "sample": sample.tolist(),
        }
    counts = Counter(category(v) for v in values)
    kept = dict(counts.most_common(MAX_CATEGORIES))
    if len(counts) > MAX_CATEGORIES:
        kept[OTHER] = sum(counts.values()) - sum(kept.values())
    return {"kind": "category", "rows": len(values), "counts": kept}


def category(value: Any) -> str:
    """A category's key: a number that stands for one (an integer pixel, a class) as its shortest text."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def save(reference: dict[str, Any], model_dir: Path) -> None:
    path = model_dir / FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(reference, separators=(",", ":")))


def load(model_dir: Path) -> dict[str, Any] | None:
    """The version's reference, or None for a version logged before references were made."""
    path = Path(model_dir) / FILE
    return read(path) if path.is_file() else None


def read(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(Path(path).read_text())
    return loaded


def vocabularies(reference: Mapping[str, Any]) -> dict[str, set[str]]:
    return {name: set(words) for name, words in reference.get("vocabularies", {}).items()}


def _is_text(texts: list[str]) -> bool:
    return bool(texts) and sum(len(t.split()) for t in texts) / len(texts) > TEXT_WORDS


def _texts(contract: ModelContract, rows: Rows) -> dict[str, list[str]]:
    """The held-out values of each string column that holds texts, by feature name."""
    found = {}
    for tensor in contract.inputs:
        if not tensor.strings:
            continue
        values = np.asarray(rows[tensor.name])
        strings = values.reshape(len(values), -1)
        for j in range(strings.shape[1]):
            texts = [str(v) for v in strings[:, j]]
            if _is_text(texts):
                found[tensor.name if strings.shape[1] == 1 else f"{tensor.name}[{j}]"] = texts
    return found


def _vocabulary(texts: list[str]) -> set[str]:
    """The most frequent words of held-out texts."""
    words = Counter(word for text in texts for word in text.lower().split())
    return {word for word, _ in words.most_common(VOCABULARY)}


def _value_names(contract: ModelContract, input_name: str, shape: tuple[int, ...], width: int) -> list[str]:
    if contract.feature_names is not None and contract.single_input:
        return list(contract.feature_names)
    if shape == () or (width == 1 and len(contract.inputs) > 1):
        return [input_name]
    return [f"{input_name}[{','.join(map(str, index))}]" for index in np.ndindex(*shape)]


def _output_value_names(output: Output, width: int) -> list[str]:
    if output.value_names is not None:
        return [f"{output.name}:{name}" for name in output.value_names]
    if width == 1:
        return [output.name]
    return [f"{output.name}[{j}]" for j in range(width)]


def _class_name(output: Output, k: int) -> str:
    return output.class_names[k] if output.class_names is not None else str(k)
