"""BentoML's machinery as the service uses it: adaptive batching, where the model is called, the request timeout,
a socket per worker, the model store. Every touch of a BentoML internal (a private module, a name BentoML
imports and we replace, a file of its package) is here, each pinned by a test that fails when an upgrade moves
it (tests/unit/test_bentoml_internals.py and the tests of each module)."""
