"""The Hub write API the stock huggingface_hub client calls (`hf repo create`, `hf upload`,
`upload_folder`, `create_commit`...): thin views over models.hub_services, hub_commit and lfs.

Writes take a Stagegate API token (`Authorization: Bearer`, scope `submit`), never a session
cookie, so a web page cannot make a signed-in browser write. Errors have the Hub's shape
(models.hub_http.HubError); every refusal is an audit event.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
import time

import yaml
from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from audit.services import Refused, deny, record_refusal
from models import hub_commit, hub_services, lfs
from models.errors import SubmissionError
from models.hub_http import Caller, HubError, header_safe
from models.hub_services import organisations_of
from models.models import Checkpoint

MAX_COMMIT_LINE = 64 * 1024 * 1024
log = logging.getLogger("stagegate.hub")
WRITE_REVISION = "main"


def origin(request) -> str:
    return request.build_absolute_uri("/").rstrip("/")


def _error_from(exc: Exception, caller: Caller | None, repo: str | None) -> HubError:
    if isinstance(exc, Refused):
        record_refusal(exc)
        if getattr(exc, "hidden", False) and caller is not None:
            return caller.repo_not_found(repo or "")
        return HubError(403, None, exc.reason)
    if isinstance(exc, hub_commit.EntryMissing):
        return HubError(404, "EntryNotFound", exc.message)
    if isinstance(exc, SubmissionError):
        return HubError(exc.status, None, exc.message)
    raise exc


def hub_write(*, methods: list[str], scope: str = "submit", anonymous: bool = False):
    """Wrap a view `fn(request, caller, **kwargs)`: token auth with `scope`, Hub error shape."""
    def decorate(fn):
        @csrf_exempt
        @require_http_methods(methods)
        @functools.wraps(fn)
        def view(request, *args, **kwargs):
            repo = f"{kwargs['org']}/{kwargs['name']}" if "org" in kwargs else None
            caller = None
            try:
                caller = Caller(request)
                if caller.token is None and not anonymous:
                    raise HubError(401, None, "Send a Stagegate API token: `hf auth login` or "
                                   "HF_TOKEN, with scope submit (create one on your profile page)")
                if caller.token is not None and not caller.token.allows(scope):
                    raise deny(actor=caller.user, action=f"{request.method} {request.path}",
                               reason=f"this API token has scope '{caller.token.scope}'; "
                                      f"this request needs '{scope}'")
                return fn(request, caller, *args, **kwargs)
            except HubError as error:
                return error.response(request.method)
            except (Refused, SubmissionError) as exc:
                return _error_from(exc, caller, repo).response(request.method)
        return view
    return decorate


def _json_body(request) -> dict:
    try:
        body = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise SubmissionError("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise SubmissionError("the request body must be a JSON object")
    return body


def _check_revision(rev: str, request) -> None:
    if request.GET.get("create_pr") in ("1", "true", "True"):
        raise SubmissionError("Stagegate has no pull requests: every commit to main is a new "
                              "checkpoint that goes to review; commit without create_pr")
    if rev != WRITE_REVISION:
        raise HubError(404, "RevisionNotFound", f"Invalid rev id: {rev}. Stagegate commits go to "
                       "main (each commit becomes a checkpoint); name it with the commit message")


# --- repos and accounts -------------------------------------------------------------------------

@hub_write(methods=["POST"])
def create_repo(request, caller):
    body = _json_body(request)
    if body.get("type") not in (None, "model"):
        raise SubmissionError(f"repo type {body.get('type')!r}: Stagegate holds model repos only")
    org = body.get("organization") or caller.user.get_username()
    name = body.get("name") or ""
    visibility = body.get("visibility")
    if visibility is None and "private" in body:
        visibility = "private" if body["private"] else "public"
    url = f"{origin(request)}/{org}/{name}"
    try:
        family = hub_services.create_repo(actor=caller.user, family_name=f"{org}/{name}",
                                          visibility=visibility)
    except hub_services.RepoExists as exc:
        response = JsonResponse({"error": exc.message, "url": url}, status=409)
        response["X-Error-Message"] = header_safe(exc.message)
        return response
    return JsonResponse({"url": f"{origin(request)}/{family.repo_id}", "name": family.repo_id,
                         "id": f"stagegate-family-{family.pk}"})


@hub_write(methods=["GET"], scope="read")
def whoami(request, caller):
    user = caller.user
    return JsonResponse({
        "type": "user", "id": str(user.pk), "name": user.get_username(),
        "fullname": user.get_full_name() or user.get_username(), "email": user.email or None,
        "emailVerified": bool(user.email), "isPro": False, "canPay": False,
        "orgs": [{"type": "org", "name": org, "fullname": org, "roleInOrg": "write"}
                 for org in organisations_of(user)],
        "auth": {"type": "access_token", "accessToken": {
            "displayName": caller.token.name,
            "role": "read" if caller.token.scope == "read" else "write"}},
    })


@hub_write(methods=["POST"], scope="read", anonymous=True)
def validate_yaml(request, caller):
    content = _json_body(request).get("content") or ""
    if not isinstance(content, str):
        raise SubmissionError("`content` must be the README.md text")
    errors = []
    if content.startswith("---"):
        parts = content.split("---", 2)
        if len(parts) < 3:
            errors.append("the YAML front matter is not closed by a `---` line")
        else:
            try:
                front = yaml.safe_load(parts[1])
            except yaml.YAMLError as exc:
                errors.append("the YAML front matter does not parse: " + " ".join(str(exc).split()))
            else:
                if front is not None and not isinstance(front, dict):
                    errors.append("the YAML front matter must be a mapping (key: value lines)")
    if errors:
        response = JsonResponse({"errors": [{"message": m} for m in errors], "warnings": []},
                                status=400)
        response["X-Error-Message"] = header_safe(errors[0])
        return response
    return JsonResponse({"errors": [], "warnings": []})


@hub_write(methods=["PUT"])
def repo_settings(request, caller, org, name):
    family = hub_services.writable_family(actor=caller.user, repo_id=f"{org}/{name}",
                                          action="repo.settings")
    body = _json_body(request)
    wanted_public = body.get("visibility") == "public" or body.get("private") is False
    if wanted_public or body.get("gated") not in (None,):
        reason = ("Stagegate decides who may see and download a model through its reviewed "
                  "releases: open a release on the checkpoint page instead of changing "
                  "visibility or gating here")
        raise deny(actor=caller.user, action="repo.settings", obj=family, reason=reason)
    return JsonResponse({})


def commit_page(request, org, name, oid):
    """Where a commit URL leads: the checkpoint's page (which checks who may see it)."""
    checkpoint = get_object_or_404(Checkpoint, family__org=org, family__name=name,
                                   manifest_digest__startswith=oid)
    return redirect(checkpoint.get_absolute_url())


# --- upload and commit --------------------------------------------------------------------------

@hub_write(methods=["POST"])
def preupload(request, caller, org, name, rev):
    _check_revision(rev, request)
    family = hub_services.writable_family(actor=caller.user, repo_id=f"{org}/{name}",
                                          action="hub.preupload")
    files = _json_body(request).get("files")
    if not isinstance(files, list):
        raise SubmissionError("preupload needs `files`: [{path, sample, size}]")
    return JsonResponse({"files": hub_services.upload_modes(family=family, files=files),
                         "commitOid": None})


def _operations(request) -> tuple[dict, list[hub_commit.Operation]]:
    """The commit's ndjson lines, read from the stream one at a time."""
    header: dict | None = None
    operations = []
    stream = request if hasattr(request, "readline") else request.META["wsgi.input"]
    while True:
        line = stream.readline(MAX_COMMIT_LINE + 1)
        if not line:
            break
        if len(line) > MAX_COMMIT_LINE:
            raise SubmissionError("a commit line is longer than 64 MiB; upload large files "
                                  "through LFS or Xet")
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            key, value = item["key"], item["value"]
        except (ValueError, KeyError, TypeError):
            raise SubmissionError("each commit line must be JSON {\"key\": ..., \"value\": ...}") \
                from None
        if not isinstance(value, dict):
            raise SubmissionError(f"the value of a {key!r} line must be an object")
        if key == "header":
            header = value
            continue
        path = value.get("path")
        if not isinstance(path, str):
            raise SubmissionError(f"a {key!r} line needs a string path")
        if key == "file":
            if value.get("encoding", "base64") != "base64":
                raise SubmissionError(f"{path}: only base64 file content is accepted")
            try:
                content = base64.b64decode(value.get("content") or "", validate=True)
            except (binascii.Error, ValueError):
                raise SubmissionError(f"{path}: content is not valid base64") from None
            operations.append(hub_commit.Operation(kind="file", path=path, content=content))
        elif key == "lfsFile":
            if value.get("algo", "sha256") != "sha256":
                raise SubmissionError(f"{path}: lfsFile algo must be sha256")
            operations.append(hub_commit.Operation(kind="lfsFile", path=path,
                                                   oid=value.get("oid"), size=value.get("size")))
        elif key in ("deletedFile", "deletedFolder"):
            operations.append(hub_commit.Operation(kind=key, path=path))
        else:
            raise SubmissionError(f"unknown commit line key {key!r}")
    if header is None:
        raise SubmissionError("the commit has no header line")
    return header, operations


@hub_write(methods=["POST"])
def commit(request, caller, org, name, rev):
    _check_revision(rev, request)
    repo = f"{org}/{name}"
    hub_services.writable_family(actor=caller.user, repo_id=repo, action="hub.commit")
    header, operations = _operations(request)
    started = time.monotonic()
    outcome = hub_commit.commit_to_repo(
        actor=caller.user, repo_id=repo, summary=str(header.get("summary") or ""),
        description=str(header.get("description") or ""),
        parent_commit=header.get("parentCommit"), operations=operations)
    oid = outcome.checkpoint.commit
    log.info("commit %s to %s: %d operations, %.2f s", oid, repo, len(operations),
             time.monotonic() - started)
    return JsonResponse({"commitUrl": f"{origin(request)}/{repo}/commit/{oid}",
                         "commitOid": oid, "pullRequestUrl": None,
                         "stagegate": {"checkpoint": outcome.checkpoint.pk,
                                       "label": outcome.checkpoint.label,
                                       "status": outcome.checkpoint.status,
                                       "manifest_digest": outcome.checkpoint.manifest_digest,
                                       "created": outcome.created}})


@hub_write(methods=["GET"])
def xet_write_token(request, caller, org, name, rev):
    _check_revision(rev, request)
    from models.xet.auth import issue_write_token

    family = hub_services.writable_family(actor=caller.user, repo_id=f"{org}/{name}",
                                          action="xet.write_token")
    token, expires = issue_write_token(user=caller.user, family=family, api_token=caller.token)
    cas_url = settings.STAGEGATE_XET_CAS_URL or f"{origin(request)}/xet"
    response = JsonResponse({"accessToken": token, "exp": expires, "casUrl": cas_url})
    response["X-Xet-Cas-Url"] = cas_url
    response["X-Xet-Access-Token"] = token
    response["X-Xet-Token-Expiration"] = str(expires)
    return response


# --- LFS ----------------------------------------------------------------------------------------

def _lfs_json(data: dict, status: int = 200) -> HttpResponse:
    return HttpResponse(json.dumps(data), status=status, content_type="application/vnd.git-lfs+json")


@hub_write(methods=["POST"])
def lfs_batch(request, caller, org, name):
    body = _json_body(request)
    ref = (body.get("ref") or {}).get("name")
    if ref not in (None, WRITE_REVISION, f"refs/heads/{WRITE_REVISION}"):
        _check_revision(ref, request)
    return _lfs_json(lfs.batch(actor=caller.user, token=caller.token, repo_id=f"{org}/{name}",
                               body=body, base_url=origin(request)))


@hub_write(methods=["POST"])
def lfs_verify(request, caller, org, name):
    lfs.verify(actor=caller.user, repo_id=f"{org}/{name}", body=_json_body(request))
    return _lfs_json({})


def _length(request) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or "")
    except ValueError:
        raise SubmissionError("an upload needs a Content-Length header") from None


@hub_write(methods=["PUT", "POST"], anonymous=True)
def lfs_object(request, caller, signed):
    """The signed URL of one object: PUT its bytes (basic), or POST the multipart completion."""
    started = time.monotonic()
    if request.method == "PUT":
        lfs.receive_object(signed=signed, stream=request, length=_length(request))
    else:
        lfs.complete_multipart(signed=signed, body=_json_body(request))
    return JsonResponse({"seconds": round(time.monotonic() - started, 3)})


@hub_write(methods=["PUT"], anonymous=True)
def lfs_part(request, caller, signed, number):
    etag = lfs.receive_part(signed=signed, number=int(number), stream=request,
                            length=_length(request))
    response = HttpResponse(status=200)
    response["ETag"] = f'"{etag}"'
    return response
