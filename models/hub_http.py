"""What every Hub-protocol endpoint shares, read side (releases.hub) and write side (models.hub):
the Hub's error shape and who is calling.

Errors always carry X-Error-Code (when the Hub has one for the case) and X-Error-Message, plus
`{"error": message}`, which is what huggingface_hub turns into its exception classes and
messages (shared/reference/hf-hub-http-contract.md §4).
"""

from __future__ import annotations

import hashlib
import json

from django.http import HttpResponse

from accounts.authentication import bearer_token_from
from accounts.services import authenticate_token
from accounts.throttle import LockedOut, check_token_allowed, token_failed


def header_safe(text: str, limit: int = 2000) -> str:
    """A message fit for X-Error-Message: one line (a header cannot hold a newline)."""
    return " ".join(str(text).split())[:limit]


class HubError(Exception):
    def __init__(self, status: int, code: str | None, message: str, commit: str | None = None,
                 detail: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.commit = status, code, message, commit
        self.detail = detail

    def response(self, method: str = "GET") -> HttpResponse:
        text = f"{self.message} {self.detail}" if self.detail else self.message
        body = b"" if method == "HEAD" else json.dumps({"error": text}).encode()
        response = HttpResponse(body, status=self.status, content_type="application/json")
        if self.code:
            response["X-Error-Code"] = self.code
        response["X-Error-Message"] = header_safe(self.message)
        if self.commit:
            response["X-Repo-Commit"] = self.commit
        return response


class Caller:
    """Who is asking: the token's user, or anonymous. A bad token is an error, not anonymous."""

    def __init__(self, request):
        raw = bearer_token_from(request)
        self.user = None
        self.token = None
        if raw is not None:
            try:
                check_token_allowed(request)  # an address that guessed tokens is locked out
            except LockedOut as exc:
                raise HubError(429, None, exc.message) from None
            token = authenticate_token(raw)
            if token is None:
                token_failed(request, "hub")
                raise HubError(401, None, "Invalid credentials in Authorization header")
            self.user, self.token = token.user, token
        elif request.user.is_authenticated:
            self.user = request.user

    @property
    def anonymous(self) -> bool:
        return self.user is None

    def repo_not_found(self, repo: str) -> HubError:
        message = (f"Repository Not Found for url: {repo}. Please make sure you specified the "
                   "correct `repo_id` and `repo_type`. If you are trying to access a private or "
                   "gated repo, make sure you are authenticated.")
        return HubError(401 if self.anonymous else 404, "RepoNotFound", message)


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
