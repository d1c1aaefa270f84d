"""Errors the registry's services raise; views and commands turn them into 4xx and exit codes."""

from __future__ import annotations


class SubmissionError(ValueError):
    """A submission was refused. `status` is the HTTP status that describes why."""

    status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class LabelTaken(SubmissionError):
    status = 409


class TooLarge(SubmissionError):
    status = 413


class IncompleteUpload(SubmissionError):
    status = 400


class SessionNotFound(SubmissionError):
    status = 404
