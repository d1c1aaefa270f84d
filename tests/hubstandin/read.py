"""Repos and reading: whoami, create, settings, model info, tree, resolve (HEAD and GET)."""

from __future__ import annotations

import re

import yaml
from flask import Response, jsonify, request, send_file

from tests.hubstandin.http import HubError, caller, json_body, repo_not_found, visible_repo
from tests.hubstandin.state import zulu

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
TREE_PAGE = 50


def card_data(commit) -> dict | None:
    entry = commit.files.get("README.md")
    if entry is None or entry.content is None:
        return None
    text = entry.content.decode("utf-8", errors="replace")
    if not text.startswith("---"):
        return None
    parts = text.split("---", 2)
    try:
        front = yaml.safe_load(parts[1]) if len(parts) == 3 else None
    except yaml.YAMLError:
        return None
    return front if isinstance(front, dict) else None


def register(app, hub) -> None:
    @app.route("/api/whoami-v2")
    def whoami():
        user = caller(hub)
        if user is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        orgs = [{"type": "org", "name": o, "roleInOrg": "write"}
                for o, members in hub.orgs.items() if user.name in members]
        return jsonify({"type": "user", "name": user.name, "fullname": user.fullname,
                        "orgs": orgs, "auth": {"type": "access_token",
                                               "accessToken": {"role": user.role}}})

    @app.route("/api/validate-yaml", methods=["POST"])
    def validate_yaml():
        body = json_body({"content", "repoType"}, {"content"})
        if not isinstance(body["content"], str):
            raise HubError(400, "content must be a string")
        text = body["content"]
        errors = []
        if text.startswith("---"):
            parts = text.split("---", 2)
            try:
                front = yaml.safe_load(parts[1]) if len(parts) == 3 else None
            except yaml.YAMLError as exc:
                errors.append({"message": f"Invalid YAML in README.md: {exc}"})
            else:
                if len(parts) < 3 or (front is not None and not isinstance(front, dict)):
                    errors.append({"message": "the metadata must be a YAML mapping between --- lines"})
        return jsonify({"errors": errors, "warnings": []}), 400 if errors else 200

    @app.route("/api/repos/create", methods=["POST"])
    def create_repo():
        user = caller(hub)
        body = json_body({"name", "organization", "type", "visibility", "private"}, {"name"})
        org = body.get("organization") or (user.name if user else "")
        name = body["name"]
        if body.get("type", "model") != "model":
            raise HubError(400, "this Hub holds model repos only")
        if not NAME_RE.match(str(name)) or not NAME_RE.match(str(org)):
            raise HubError(400, f"invalid repo name {org}/{name}")
        if "visibility" in body and body["visibility"] not in ("private", "public"):
            raise HubError(400, "visibility must be private or public")
        if user is None or not hub.can_write(user, org):
            raise HubError(403, f"You don't have the rights to create a model under the namespace {org}")
        repo_id = f"{org}/{name}"
        url = f"{request.host_url.rstrip('/')}/{repo_id}"
        with hub.lock:
            if repo_id in hub.repos:
                response = jsonify({"error": "You already created this model repo", "url": url})
                response.status_code = 409
                response.headers["X-Error-Message"] = "You already created this model repo"
                return response
            private = body.get("visibility", "public") == "private" or body.get("private") is True
            hub.create_repo(repo_id, private=private)
        return jsonify({"url": url, "name": repo_id})

    @app.route("/api/models/<org>/<name>/settings", methods=["PUT"])
    def settings(org, name):
        from tests.hubstandin.http import writable_repo

        user = caller(hub)
        body = json_body({"gated", "visibility", "private", "discussionsDisabled"})
        if not body:
            raise HubError(400, "At least one setting must be updated")
        if "gated" in body and body["gated"] not in ("auto", "manual", False):
            raise HubError(400, f"gated must be \"auto\", \"manual\" or false, not {body['gated']!r}")
        if "visibility" in body and body["visibility"] not in ("private", "public"):
            raise HubError(400, "visibility must be private or public")
        if "visibility" in body and "private" in body:
            raise HubError(400, "send visibility or private, not both")
        with hub.lock:
            repo = writable_repo(hub, user, f"{org}/{name}")
            if "gated" in body:
                repo.gated = body["gated"]
            if "visibility" in body:
                repo.private = body["visibility"] == "private"
            elif "private" in body:
                repo.private = bool(body["private"])
        return jsonify({})

    @app.route("/api/models/<org>/<name>")
    @app.route("/api/models/<org>/<name>/revision/<path:rev>")
    def model_info(org, name, rev="main"):
        user = caller(hub)
        with hub.lock:
            repo = visible_repo(hub, user, f"{org}/{name}")
            commit = repo.commit(rev)
            if commit is None:
                raise HubError(404, f"Invalid rev id: {rev}", code="RevisionNotFound")
            blobs = request.args.get("blobs") in ("1", "true")
            siblings = []
            for entry in sorted(commit.files.values(), key=lambda e: e.path):
                item = {"rfilename": entry.path}
                if blobs:
                    item.update({"size": entry.size, "blobId": entry.oid})
                    if entry.is_lfs:
                        item["lfs"] = entry.tree_json()["lfs"] | {"sha256": entry.sha256}
                        item["lfs"].pop("oid")
                siblings.append(item)
            info = {"_id": repo.id, "id": repo.id, "modelId": repo.id, "author": repo.org,
                    "sha": commit.oid, "private": repo.private, "gated": repo.gated,
                    "disabled": False, "lastModified": zulu(commit.at),
                    "createdAt": zulu(repo.created_at), "siblings": siblings, "tags": [],
                    "downloads": 0, "likes": 0}
            card = card_data(commit)
            if card is not None:
                info["cardData"] = card
        return jsonify(info)

    @app.route("/api/models/<org>/<name>/tree/<path:rest>")
    def tree(org, name, rest):
        user = caller(hub)
        rev, _, path = rest.partition("/")
        with hub.lock:
            repo = visible_repo(hub, user, f"{org}/{name}")
            commit = repo.commit(rev)
            if commit is None:
                raise HubError(404, f"Invalid rev id: {rev}", code="RevisionNotFound")
            recursive = request.args.get("recursive", "false").lower() in ("1", "true")
            prefix = f"{path.strip('/')}/" if path.strip("/") else ""
            entries = [e.tree_json() for e in sorted(commit.files.values(), key=lambda e: e.path)
                       if e.path.startswith(prefix)
                       and (recursive or "/" not in e.path[len(prefix):])]
            if prefix and not entries:
                raise HubError(404, f"{path} does not exist at {rev}", code="EntryNotFound")
        cursor = int(request.args.get("cursor", "0") or 0)
        response = jsonify(entries[cursor:cursor + TREE_PAGE])
        if cursor + TREE_PAGE < len(entries):
            args = request.args.to_dict() | {"cursor": str(cursor + TREE_PAGE)}
            query = "&".join(f"{k}={v}" for k, v in args.items())
            response.headers["Link"] = f'<{request.base_url}?{query}>; rel="next"'
        return response

    @app.route("/<org>/<name>/resolve/<rev>/<path:path>", methods=["GET", "HEAD"])
    def resolve(org, name, rev, path):
        user = caller(hub)
        with hub.lock:
            repo = hub.repos.get(f"{org}/{name}")
            if repo is None or not hub.can_see(user, repo):
                raise repo_not_found(user)
            commit = repo.commit(rev)
            if commit is None:
                raise HubError(404, f"Invalid rev id: {rev}", code="RevisionNotFound")
            if not hub.can_download(user, repo):
                raise HubError(401 if user is None else 403,
                               f"Access to model {repo.id} is restricted and you are not in the "
                               "authorized list. Visit the repo page to ask for access.",
                               code="GatedRepo", commit=commit.oid)
            entry = commit.files.get(path)
            if entry is None:
                raise HubError(404, f"{path} does not exist at {rev}", code="EntryNotFound",
                               commit=commit.oid)
        if entry.is_lfs:
            response = send_file(hub.object_path(entry.sha256), mimetype="application/octet-stream",
                                 conditional=True, etag=False)
            response.headers["X-Linked-Etag"] = f'"{entry.sha256}"'
            response.headers["X-Linked-Size"] = str(entry.size)
            response.headers["ETag"] = f'"{entry.sha256}"'
        else:
            # Werkzeug leaves the body out of a HEAD answer and keeps its Content-Length.
            response = Response(entry.content, content_type="application/octet-stream")
            response.headers["ETag"] = f'"{entry.oid}"'
        response.headers["X-Repo-Commit"] = commit.oid
        response.headers["Accept-Ranges"] = "bytes"
        return response
