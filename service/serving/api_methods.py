"""BentoML's `@bentoml.api` methods are descriptors that build a new wrapper (`inspect.signature`,
`functools.wraps`) on every attribute access, and its server reads the method once or twice per request (a
measurable share of a small model's request: docs/benchmarks/serve.md). Bound once on the instance, the server
gets the same callable every time."""

from __future__ import annotations


def bind_api_methods(instance: object) -> None:
    """Store each API method of `instance`'s class, bound once, on the instance (shadows the descriptor)."""
    from _bentoml_sdk.method import APIMethod

    owner = type(instance)
    for name in dir(owner):
        attribute = getattr(owner, name, None)
        if isinstance(attribute, APIMethod) and name not in vars(instance):
            setattr(instance, name, attribute.__get__(instance, owner))
