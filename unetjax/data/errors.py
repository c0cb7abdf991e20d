"""The one error type for bad input data, raised before any training starts."""


class DataError(ValueError):
    """Input data that cannot be used; the message names the file and what was expected."""
