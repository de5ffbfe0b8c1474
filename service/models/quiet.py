"""Keep TensorFlow, Keras and MLflow quiet unless asked (`NBSHIP_VERBOSE=1`)."""

from __future__ import annotations

import logging
import os
import warnings

# Environment for this process and for the notebook kernel it starts: set before TensorFlow is imported.
QUIET_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "TF_ENABLE_ONEDNN_OPTS": "0",
    "MLFLOW_LOGGING_LEVEL": "WARNING",
    # The model carries its explicit pip requirements; the project's uv.lock is not part of it.
    "MLFLOW_LOG_UV_FILES": "false",
    "PYTHONWARNINGS": "ignore",
}


def quiet() -> None:
    if os.environ.get("NBSHIP_VERBOSE") == "1":
        return
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    warnings.filterwarnings("ignore")
    for name in ("mlflow", "alembic", "absl", "tensorflow", "urllib3", "papermill", "traitlets"):
        logging.getLogger(name).setLevel(logging.ERROR)


def quiet_keras() -> None:
    """Turn off Keras progress bars (call where Keras is already imported)."""
    import keras

    keras.utils.disable_interactive_logging()
