"""Contracts of the test's own fake models (service.models.contract): what the job tests' fake digits model takes,
and one contract of each form the request document must state exactly (tests/unit/test_request_document.py)."""

from __future__ import annotations

import numpy as np

from service.http.rows import RowRules
from service.http.schemas import request_model
from service.models.contract import STRING, ModelContract, Output, Tensor

F16, F32, F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)
I32, I64 = np.dtype(np.int32), np.dtype(np.int64)

# The fake digits model of the job tests: 64 float32 features in, 10 class probabilities out.
DIGITS_LIKE = ModelContract.single(
    "classification",
    Tensor((64,), F32, "pixels"),
    Tensor((10,), F32, "probabilities"),
)

WINE_FEATURES = (
    "alcohol", "malic_acid", "ash", "alcalinity_of_ash", "magnesium", "total_phenols", "flavanoids",
    "nonflavanoid_phenols", "proanthocyanins", "color_intensity", "hue", "od280/od315_of_diluted_wines", "proline",
)  # fmt: skip

# One contract a form: one input of fixed shape (flat, an image, ints, halves, doubles), named features, a scalar
# string, several named inputs (a string among them, one value a row or not), several outputs of every task.
FORMS: dict[str, ModelContract] = {
    "digits": DIGITS_LIKE,
    "image": ModelContract.single("classification", Tensor((2, 2, 1), F32, "image"), Tensor((3,), F32, "y")),
    "wine": ModelContract.single(
        "classification",
        Tensor((13,), F32, "measurements"),
        Tensor((3,), F32, "cultivar"),
        class_names=("class_0", "class_1", "class_2"),
        feature_names=WINE_FEATURES,
    ),
    "one-feature": ModelContract.single(
        "regression", Tensor((1,), F64, "x"), Tensor((1,), F32, "y"), feature_names=("dose",)
    ),
    "counts": ModelContract.single("regression", Tensor((3,), I32, "counts"), Tensor((), F32, "y")),
    "ids": ModelContract.single("regression", Tensor((2,), I64, "ids"), Tensor((2,), F32, "y")),
    "halves": ModelContract.single("multilabel", Tensor((2,), F16, "x"), Tensor((4,), F32, "tags")),
    "text": ModelContract.single("classification", Tensor((), STRING, "text"), Tensor((1,), F32, "positive")),
    "notes": ModelContract(
        (Tensor((4,), F32, "measurements"), Tensor((), STRING, "note")),
        (
            Output(Tensor((3,), F32, "cultivar"), "classification", ("a", "b", "c")),
            Output(Tensor((1,), F32, "alcohol"), "regression"),
        ),
    ),
    "columns": ModelContract(
        (Tensor((1,), I32, "age"), Tensor((1,), STRING, "sex"), Tensor((1,), F32, "bmi")),
        (Output(Tensor((1,), F32, "progression"), "regression"),),
    ),
    "uniform-columns": ModelContract(
        (Tensor((1,), F32, "bmi"), Tensor((1,), F32, "bp")),
        (
            Output(Tensor((2,), F32, "risk"), "multilabel", ("high", "low"), threshold=0.4),
            Output(Tensor((2,), F32, "scores"), "regression", value_names=("s1", "s2")),
        ),
    ),
}


def rules(max_rows: int, contract: ModelContract = DIGITS_LIKE) -> RowRules:
    return RowRules(lambda: contract, max_rows)


def job_request(max_rows: int, contract: ModelContract = DIGITS_LIKE) -> type:
    """The job API's body model for `contract`, as the service builds it."""
    return request_model("JobRequest", rules(max_rows, contract), contract)
