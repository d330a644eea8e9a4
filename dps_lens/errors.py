"""User-facing errors: each message says what went wrong and how to fix it."""


class DpsLensError(ValueError):
    """An input problem the user can fix; the CLI prints it as one line, without a traceback."""


class ModelLoadError(DpsLensError):
    """A model spec could not be resolved or loaded."""


class DataFormatError(DpsLensError):
    """A data file is malformed; the message names the file and line."""


class NonFiniteLossError(DpsLensError):
    """A forward pass produced NaN or inf losses."""
