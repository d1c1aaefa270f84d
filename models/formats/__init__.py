"""Readers for checkpoint file formats. They read headers only, never tensor data."""


class FormatError(ValueError):
    """A file is not what its name says it is. The message names the problem in words."""
