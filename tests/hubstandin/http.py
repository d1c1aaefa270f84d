"""What every route of the stand-in shares: the Hub's error shape, who is calling, strict JSON
bodies, and the request log tests read ("did the second mirror run write anything?")."""

from __future__ import annotations

import json
import time

from flask import Response, g, request


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None,
                 commit: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.commit = status, message, code, commit

    def response(self) -> Response:
        body = "" if request.method == "HEAD" else json.dumps({"error": self.message})
        response = Response(body, status=self.status, content_type="application/json")
        response.headers["X-Error-Message"] = " ".join(self.message.split())[:500]
        if self.code:
            response.headers["X-Error-Code"] = self.code
        if self.commit:
            response.headers["X-Repo-Commit"] = self.commit
        return response


def caller(hub):
    """The token's user; None when anonymous. A token the Hub does not know is a 401."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        return None
    if scheme.lower() != "bearer" or not token.strip():
        raise HubError(401, "Invalid credentials in Authorization header")
    user = hub.user_by_token(token.strip())
    if user is None:
        raise HubError(401, "Invalid credentials in Authorization header")
    return user


def json_body(allowed: set[str], required: set[str] = frozenset()) -> dict:
    """The body as a JSON object with only the keys the Hub's API documents."""
    try:
        body = json.loads(request.get_data() or b"null")
    except ValueError:
        raise HubError(400, "the request body is not JSON") from None
    if not isinstance(body, dict):
        raise HubError(400, "the request body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise HubError(400, f"unknown keys in the request body: {', '.join(unknown)}")
    missing = sorted(required - set(body))
    if missing:
        raise HubError(400, f"missing keys in the request body: {', '.join(missing)}")
    return body


def repo_not_found(user) -> HubError:
    return HubError(401 if user is None else 404,
                    "Repository Not Found for url: the repo does not exist or you may not see it.",
                    code="RepoNotFound")


def visible_repo(hub, user, repo_id: str):
    repo = hub.repos.get(repo_id)
    if repo is None or not hub.can_see(user, repo):
        raise repo_not_found(user)
    return repo


def writable_repo(hub, user, repo_id: str):
    repo = visible_repo(hub, user, repo_id)
    if not hub.can_write(user, repo):
        raise HubError(403, f"You don't have the rights to write to {repo_id}: a member's "
                            "token with the write role is needed")
    return repo


def install(app, hub, log_path) -> None:
    @app.errorhandler(HubError)
    def _hub_error(error: HubError):
        return error.response()

    @app.before_request
    def _start():
        g.started = time.monotonic()

    @app.after_request
    def _log(response):
        with hub.lock, open(log_path, "a") as log:
            log.write(json.dumps({"method": request.method, "path": request.path,
                                  "status": response.status_code}) + "\n")
        return response
