"""The one error type of the data package."""
from __future__ import annotations


class DataError(ValueError):
    """Bad or missing dataset files. The message names the path and what was expected."""
