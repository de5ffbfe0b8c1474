"""What runs in the image: the prediction service (`service.py`) and the job worker (`jobs/worker.py`).

Folders by concern, each importing only those listed before it (tests/unit/test_layout.py walks the imports):

    models/    the model as every process sees it: contract, loading, lineage, scores, which version answers
    settings   every setting of the API and the worker, on one shared base (a module, beside service.py)
    http/      the HTTP edge: request bodies and rows, answers, the one error shape, access, the docs page
    serving/   BentoML's machinery and every touch of its internals: batching, model calls, sockets, the store
    jobs/      the job layer: store, queue, submission, its HTTP routes, the worker
    service    the BentoML service that wires them (service.py)
    stack/     `./noxw -s stack`, for local development: not shipped in the Bento

Nothing here imports `pipeline/`: the image ships no training code.
"""
