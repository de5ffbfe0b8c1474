"""Rows as a MongoDB document stores them: the job store's jobs and the evidence records' sampled inputs."""

from __future__ import annotations

from typing import Any

import numpy as np
from bson.binary import Binary

from service.models.contract import STRING, Rows


def encode_rows(rows: Rows) -> dict[str, dict[str, Any]]:
    """Each input's rows for the store: numbers as raw little-endian bytes of their dtype (a 10,000-row job of 64
    float32 values is 2.5 MB instead of about 8 MB of BSON arrays), strings as a flat list."""
    stored = {}
    for name, values in rows.items():
        entry: dict[str, Any] = {"shape": list(values.shape[1:])}
        if values.dtype == STRING:
            entry["strings"] = values.ravel().tolist()
        else:
            little = values.dtype.newbyteorder("<")
            entry |= {
                "bytes": Binary(np.ascontiguousarray(values, dtype=little).tobytes()),
                "dtype": little.str,
            }
        stored[name] = entry
    return stored


def decode_rows(document: dict[str, Any]) -> Rows:
    n_rows, inputs = document["n_rows"], document["inputs"]
    if isinstance(inputs, bytes):  # stored before inputs were named: the model's only input
        values = np.frombuffer(inputs, dtype=document.get("dtype", "<f4"))
        return {"": values.reshape(n_rows, *document.get("row_shape", (-1,)))}
    rows = {}
    for name, entry in inputs.items():
        if "strings" in entry:
            values = np.array(entry["strings"], dtype=STRING)
        else:
            values = np.frombuffer(entry["bytes"], dtype=entry["dtype"])
        rows[name] = values.reshape(n_rows, *entry["shape"])
    return rows
