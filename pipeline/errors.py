"""Errors the pipeline reports to a person as one clear line (no traceback)."""


class PipelineError(Exception):
    """A failure the command line reports as `error: <message>`."""

    exit_code = 1


class BadParameter(PipelineError):
    """A notebook parameter that does not exist or has a value of the wrong type."""

    exit_code = 2


class TrackingUnreachable(PipelineError):
    exit_code = 3


class NotebookFailed(PipelineError):
    """A cell of the training notebook raised; nothing was registered."""

    exit_code = 4


class AliasError(PipelineError):
    """A promotion or rollback that cannot be done (unknown version, nothing to roll back to)."""

    exit_code = 2
