"""The peer from the classic "notebook to production" recipe: Flask behind gunicorn, the Keras model loaded at
import, `model.predict` once per request. Served by the serve benchmark only (`MODEL_DIR` names the MLflow model).
"""

from __future__ import annotations

import os

import numpy as np
from flask import Flask, jsonify, request

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import mlflow.keras

model = mlflow.keras.load_model(os.environ["MODEL_DIR"])
app = Flask(__name__)


@app.post("/predict")
def predict():  # type: ignore[no-untyped-def]
    rows = np.array(request.get_json()["instances"], dtype=np.float32)
    probabilities = model.predict(rows, verbose=0)
    return jsonify(predictions=probabilities.argmax(axis=1).tolist(), probabilities=probabilities.tolist())
