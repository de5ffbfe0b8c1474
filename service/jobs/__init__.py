"""The job layer: jobs stored in MongoDB (store), carried by RabbitMQ (queue), submitted store-first (submit),
served over HTTP at /jobs (api) and run in micro-batches by `python -m service.jobs.worker` (worker)."""
