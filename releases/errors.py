class TransitionNotAllowed(Exception):
    """A workflow action refused for the release's state or the policy's gates (HTTP 409).
    The message says, in words a person can act on, why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class ReleaseInputError(ValueError):
    """The request itself is incomplete or malformed (HTTP 400)."""
