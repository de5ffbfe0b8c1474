"""The HTTP edge: what a request may carry (rows in MLflow's formats, checked against the model's contract), what
an answer looks like, the one error shape on every route, who may call and how much they may send, and the
service's own OpenAPI page. Plain ASGI and pydantic: nothing here knows BentoML."""
