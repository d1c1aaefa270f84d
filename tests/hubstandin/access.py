"""The Hub's user-access-request API, as models-gated.md and huggingface_hub 2.4.0's docstrings
describe it: three lists, `handle` (a status change by user name or request id, with an
optional rejection reason of at most 200 characters) and `grant`. A repo that is not gated
answers 400; someone without write access 403; an unknown user, an unknown request, or a
request already in the status asked for, 404; a grant to someone who already has access, 400.

Users ask for access from their browser on the real Hub (no API); here, `request` is that
browser form, so a test can play a stranger who asks."""

from __future__ import annotations

import time

from flask import jsonify, request

from tests.hubstandin.http import HubError, caller, json_body, visible_repo, writable_repo
from tests.hubstandin.state import AccessEntry, zulu

STATUSES = ("pending", "accepted", "rejected")
PAGE = 50


def _gated_repo(hub, user, repo_id):
    repo = writable_repo(hub, user, repo_id)
    if not repo.gated:
        raise HubError(400, f"{repo_id} is not a gated repo: enable access requests first")
    return repo


def register(app, hub) -> None:
    @app.route("/api/models/<org>/<name>/user-access-request/<status>", methods=["GET"])
    def list_requests(org, name, status):
        if status not in STATUSES:
            raise HubError(404, f"no list {status!r}: pending, accepted or rejected")
        user = caller(hub)
        with hub.lock:
            repo = _gated_repo(hub, user, f"{org}/{name}")
            entries = sorted((e for e in repo.access.values() if e.status == status),
                             key=lambda e: (e.at, e.request_id))
            items = [{"user": {"user": e.user, "fullname": hub.users[e.user].fullname or e.user,
                               "email": hub.users[e.user].email or None},
                      "requestId": e.request_id, "status": e.status, "timestamp": zulu(e.at),
                      "fields": e.fields} for e in entries]
        cursor = int(request.args.get("cursor", "0") or 0)
        response = jsonify(items[cursor:cursor + PAGE])
        if cursor + PAGE < len(items):
            response.headers["Link"] = f'<{request.base_url}?cursor={cursor + PAGE}>; rel="next"'
        return response

    @app.route("/api/models/<org>/<name>/user-access-request/handle", methods=["POST"])
    def handle(org, name):
        user = caller(hub)
        body = json_body({"user", "requestId", "status", "rejectionReason"}, {"status"})
        if ("user" in body) == ("requestId" in body):
            raise HubError(400, "send exactly one of user and requestId")
        if body["status"] not in STATUSES:
            raise HubError(400, "status must be accepted, rejected or pending")
        reason = body.get("rejectionReason")
        if reason is not None and (body["status"] != "rejected" or not isinstance(reason, str)
                                   or len(reason) > 200):
            raise HubError(400, "rejectionReason is a text of at most 200 characters, "
                                "sent only when rejecting")
        with hub.lock:
            repo = _gated_repo(hub, user, f"{org}/{name}")
            if "user" in body:
                if body["user"] not in hub.users:
                    raise HubError(404, f"user {body['user']!r} does not exist")
                entry = repo.access.get(body["user"])
            else:
                entry = next((e for e in repo.access.values()
                              if e.request_id == body["requestId"]), None)
            if entry is None:
                raise HubError(404, "no access request for this user on this repo")
            if entry.status == body["status"]:
                raise HubError(404, f"the access request is already {entry.status}")
            entry.status = body["status"]
            entry.rejection_reason = reason
            entry.at = time.time()
        return jsonify({})

    @app.route("/api/models/<org>/<name>/user-access-request/grant", methods=["POST"])
    def grant(org, name):
        user = caller(hub)
        body = json_body({"user"}, {"user"})
        with hub.lock:
            repo = _gated_repo(hub, user, f"{org}/{name}")
            if body["user"] not in hub.users:
                raise HubError(404, f"user {body['user']!r} does not exist")
            entry = repo.access.get(body["user"])
            if entry is not None and entry.status == "accepted":
                raise HubError(400, f"{body['user']} already has access to {repo.id}")
            if entry is None:
                entry = repo.access[body["user"]] = AccessEntry(
                    request_id=hub.new_id(), user=body["user"], status="accepted", at=time.time())
            entry.status, entry.at = "accepted", time.time()
        return jsonify({})

    @app.route("/<org>/<name>/ask-access", methods=["POST"])
    def ask_access(org, name):
        """The browser form a user fills in on a gated repo's page."""
        user = caller(hub)
        if user is None:
            raise HubError(401, "sign in to ask for access")
        fields = request.get_json(silent=True) if request.get_data() else None
        if fields is not None and (not isinstance(fields, dict)
                                   or not all(isinstance(v, str) for v in fields.values())):
            raise HubError(400, "the form's answers are a JSON object of strings")
        with hub.lock:
            repo = visible_repo(hub, user, f"{org}/{name}")
            if not repo.gated:
                raise HubError(400, f"{repo.id} is not gated")
            if user.name in repo.access:
                return jsonify({"status": repo.access[user.name].status})
            status = "accepted" if repo.gated == "auto" else "pending"
            repo.access[user.name] = AccessEntry(request_id=hub.new_id(), user=user.name,
                                                 status=status, at=time.time(), fields=fields)
        return jsonify({"status": status})
