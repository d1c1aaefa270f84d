"""Uploads: preupload, the LFS batch API (basic transfer only; this Hub has no Xet CAS and
offers none), the signed object PUT, verify, and the ndjson commit.

Everything the contract does not allow is refused: a batch without the git-lfs media types or
without the `basic` transfer, an object whose bytes do not hash to its oid, a commit line with an
unknown key, an lfsFile whose object was never uploaded, a path with `..`, a stale parentCommit.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import tempfile

from flask import jsonify, request

from tests.hubstandin.http import HubError, caller, json_body, writable_repo
from tests.hubstandin.state import LFS_SUFFIXES, REGULAR_LIMIT, Entry

LFS_TYPE = "application/vnd.git-lfs+json"
SIGNING_KEY = os.urandom(32)


def _sign(oid: str, size: int) -> str:
    return hmac.new(SIGNING_KEY, f"{oid}:{size}".encode(), hashlib.sha256).hexdigest()


def _check_path(path) -> str:
    if not isinstance(path, str) or not path or path.startswith("/") or "\\" in path \
            or any(part in ("", ".", "..") for part in path.split("/")):
        raise HubError(400, f"invalid path in repo: {path!r}")
    return path


def _check_rev(rev: str) -> None:
    if rev != "main":
        raise HubError(404, f"Invalid rev id: {rev}", code="RevisionNotFound")


def _lfs_json(data: dict, status: int = 200):
    response = jsonify(data)
    response.status_code = status
    response.headers["Content-Type"] = LFS_TYPE
    return response


def register(app, hub) -> None:
    @app.route("/api/models/<org>/<name>/preupload/<rev>", methods=["POST"])
    def preupload(org, name, rev):
        user = caller(hub)
        _check_rev(rev)
        if request.args.get("create_pr"):
            raise HubError(400, "pull requests are not offered by this Hub")
        body = json_body({"files", "gitIgnore", "gitAttributes"}, {"files"})
        with hub.lock:
            repo = writable_repo(hub, user, f"{org}/{name}")
            head = repo.head.files
        answer = []
        for item in body["files"]:
            if not isinstance(item, dict) or set(item) - {"path", "sample", "size"}:
                raise HubError(400, "each file is {path, sample, size}")
            path = _check_path(item.get("path"))
            try:
                sample = base64.b64decode(item.get("sample") or "", validate=True)
            except (binascii.Error, ValueError):
                raise HubError(400, f"{path}: sample is not base64") from None
            size = item.get("size")
            if not isinstance(size, int) or size < 0:
                raise HubError(400, f"{path}: size must be a whole number")
            lfs = path.endswith(LFS_SUFFIXES) or size > REGULAR_LIMIT or b"\0" in sample
            entry = {"path": path, "uploadMode": "lfs" if lfs else "regular",
                     "shouldIgnore": False}
            if path in head:
                current = head[path]
                entry["oid"] = current.sha256 if current.is_lfs else current.oid
            answer.append(entry)
        return jsonify({"files": answer, "commitOid": None})

    @app.route("/<org>/<name_git>/info/lfs/objects/batch", methods=["POST"])
    def lfs_batch(org, name_git):
        if not name_git.endswith(".git"):
            raise HubError(404, "not a git remote")
        user = caller(hub)
        if request.headers.get("Accept") != LFS_TYPE or \
                request.headers.get("Content-Type", "").split(";")[0] != LFS_TYPE:
            raise HubError(406, f"the LFS batch API speaks {LFS_TYPE} (Accept and Content-Type)")
        body = json_body({"operation", "transfers", "objects", "hash_algo", "ref"},
                         {"operation", "objects"})
        if body["operation"] != "upload":
            raise HubError(400, "only the upload operation is offered")
        if "basic" not in (body.get("transfers") or ["basic"]):
            raise HubError(400, "this Hub offers the basic transfer only")
        if body.get("hash_algo", "sha256") != "sha256":
            raise HubError(400, "hash_algo must be sha256")
        with hub.lock:
            writable_repo(hub, user, f"{org}/{name_git[:-4]}")
        base = request.host_url.rstrip("/")
        objects = []
        for obj in body["objects"]:
            oid, size = obj.get("oid"), obj.get("size")
            if not isinstance(oid, str) or len(oid) != 64 or not isinstance(size, int):
                raise HubError(400, "each object is {oid: sha256 hex, size: int}")
            item = {"oid": oid, "size": size, "authenticated": True}
            if not hub.has_object(oid, size):
                item["actions"] = {
                    "upload": {"href": f"{base}/lfs-objects/{oid}/{size}?sig={_sign(oid, size)}"},
                    "verify": {"href": f"{base}/{org}/{name_git}/info/lfs/objects/verify"}}
            objects.append(item)
        return _lfs_json({"transfer": "basic", "objects": objects})

    @app.route("/lfs-objects/<oid>/<int:size>", methods=["PUT"])
    def lfs_put(oid, size):
        if not hmac.compare_digest(request.args.get("sig", ""), _sign(oid, size)):
            raise HubError(403, "the upload URL's signature does not match")
        digest = hashlib.sha256()
        received = 0
        fd, tmp = tempfile.mkstemp(dir=hub.objects)
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := request.stream.read(1024 * 1024):
                    digest.update(chunk)
                    received += len(chunk)
                    out.write(chunk)
            if received != size or digest.hexdigest() != oid:
                raise HubError(400, f"the uploaded bytes ({received} B, sha256 "
                                    f"{digest.hexdigest()}) are not the object {oid} ({size} B)")
            os.replace(tmp, hub.object_path(oid))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return "", 200

    @app.route("/<org>/<name_git>/info/lfs/objects/verify", methods=["POST"])
    def lfs_verify(org, name_git):
        user = caller(hub)
        body = json_body({"oid", "size"}, {"oid", "size"})
        with hub.lock:
            writable_repo(hub, user, f"{org}/{name_git.removesuffix('.git')}")
        if not hub.has_object(body["oid"], body["size"]):
            raise HubError(404, f"object {body['oid']} was not uploaded")
        return _lfs_json({})

    @app.route("/api/models/<org>/<name>/commit/<rev>", methods=["POST"])
    def commit(org, name, rev):
        user = caller(hub)
        _check_rev(rev)
        if request.headers.get("Content-Type", "").split(";")[0] != "application/x-ndjson":
            raise HubError(400, "a commit is application/x-ndjson")
        lines = [json.loads(line) for line in request.get_data().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "a commit starts with its header line")
        header = lines[0].get("value") or {}
        if set(header) - {"summary", "description", "parentCommit"} or not header.get("summary"):
            raise HubError(400, "the header is {summary, description?, parentCommit?}")
        with hub.lock:
            repo = writable_repo(hub, user, f"{org}/{name}")
            if header.get("parentCommit") and header["parentCommit"] != repo.head.oid:
                raise HubError(412, "A commit has happened since the parent commit: fetch the "
                                    "repo again and retry")
            files = dict(repo.head.files)
            for line in lines[1:]:
                key, value = line.get("key"), line.get("value") or {}
                path = _check_path(value.get("path"))
                if key == "file":
                    if value.get("encoding") != "base64" or set(value) - {"path", "content", "encoding"}:
                        raise HubError(400, f"{path}: file lines are {{path, content, encoding: base64}}")
                    content = base64.b64decode(value.get("content") or "")
                    files[path] = Entry(path, len(content), content=content)
                elif key == "lfsFile":
                    if value.get("algo") != "sha256" or set(value) - {"path", "algo", "oid", "size"}:
                        raise HubError(400, f"{path}: lfsFile lines are {{path, algo: sha256, oid, size}}")
                    oid, size = value.get("oid"), value.get("size")
                    if not hub.has_object(oid, size):
                        raise HubError(400, f"{path}: LFS object {oid} was not uploaded")
                    if path in hub.tamper_paths:
                        oid = hub.tampered(oid)
                    files[path] = Entry(path, size, sha256=oid)
                elif key == "deletedFile":
                    if path not in files:
                        raise HubError(404, f"A file with this name doesn't exist: {path}",
                                       code="EntryNotFound")
                    del files[path]
                elif key == "deletedFolder":
                    files = {p: e for p, e in files.items() if not p.startswith(path.rstrip("/") + "/")}
                else:
                    raise HubError(400, f"unknown commit line key {key!r}")
            made = hub.add_commit(repo, header["summary"], files)
        base = request.host_url.rstrip("/")
        return jsonify({"commitUrl": f"{base}/{repo.id}/commit/{made.oid}", "commitOid": made.oid,
                        "pullRequestUrl": None})
