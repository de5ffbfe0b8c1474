"""The prediction service with one more route for the benchmarks, `POST /noop`: the HTTP stack's ceiling, parsing the
same body as /predict and calling no model. The production service has no such route; this entry point serves it
(`bentoml serve noop_service:NoopService --working-dir tests/benchmarks`), with the service's own configuration,
mounted apps and middlewares."""

from __future__ import annotations

from typing import Any, cast

import bentoml
from pydantic import BaseModel

from service.service import PredictionService

production = cast(bentoml.Service[Any], PredictionService)


class NoopResponse(BaseModel):
    """A model, like the answers: BentoML rebuilds the JSON schema of a plain `dict`/`list` return type on every
    response, which would make the ceiling slower than /predict."""

    rows: int


class WithNoop(production.inner):  # type: ignore[name-defined,misc]
    @bentoml.api
    async def noop(self, instances: list[Any]) -> NoopResponse:
        """Benchmarks only: the HTTP stack's ceiling, parsing the same body."""
        return NoopResponse(rows=len(instances))


NoopService = bentoml.service(**production.config)(WithNoop)
for app, path, name in production.mount_apps:
    NoopService.mount_asgi_app(app, path=path, name=name)
for middleware, options in production.middlewares:
    NoopService.add_asgi_middleware(middleware, **options)
