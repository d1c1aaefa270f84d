"""The Hub read API: what huggingface_hub and transformers call, per
shared/reference/hf-hub-http-contract.md.

Repos are model families (`org/name`); revisions are `main` (the newest published checkpoint the
caller may see), stage names, checkpoint labels and 40-hex commits (a manifest digest's first 40
characters, so `/resolve/{commit}/...` never changes). Every revision serves a release's pinned
checkpoint (the bytes its stages were published with), never the one it may be reviewing now. Model info and the file tree of a gated
release are readable by anyone, as on the public Hub; its bytes (`/resolve`) are not. Errors
always carry X-Error-Code / X-Error-Message. No Xet header is ever sent.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from models.cards import model_card
from models.hub_http import Caller, HubError, git_oid as _git_oid, lfs_pointer as _lfs_pointer
from models.hub_read import unreleased_checkpoint, unreleased_info_json
from releases import access
from releases.downloads import file_response
from releases.models import Release
from releases.policy import LADDER
from releases.signatures import SignedFile, signed_files

TREE_PAGE_SIZE = 1000
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


DISABLED = "Access to this resource is disabled."
UNRELEASED_FALLBACK = ("RepoNotFound", "RevisionNotFound")


def _zulu(dt) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def resolve(caller: Caller, org: str, name: str, rev: str | None) -> Release:
    """The release whose checkpoint `rev` names, among those the caller may discover."""
    repo = f"{org}/{name}"
    visible = list(access.discoverable_releases(caller.user)
                   .filter(checkpoint__family__org=org, checkpoint__family__name=name)
                   .order_by("-checkpoint__created_at", "-id"))
    if not visible:
        raise caller.repo_not_found(repo)
    live = [r for r in visible if r.status != Release.Status.WITHDRAWN]
    rev = rev or "main"
    if rev == "main":
        candidates = live or visible
    elif rev in LADDER:
        level = LADDER.index(rev)
        candidates = [r for r in visible if LADDER.index(r.current_stage) >= level]
    elif COMMIT_RE.match(rev):
        candidates = [r for r in visible if r.published_checkpoint.manifest_digest.startswith(rev)]
    else:
        candidates = [r for r in visible if r.published_checkpoint.label == rev]
    if not candidates:
        raise HubError(404, "RevisionNotFound", f"Invalid rev id: {rev}")
    release = candidates[0]
    if release.status == Release.Status.WITHDRAWN:
        raise withdrawn(release)
    return release


def withdrawn(release: Release) -> HubError:
    # The client recognises a disabled repo by this exact message. 401 (not 403) because
    # hf_hub_download re-raises only 401s and repo/gated errors from its HEAD call; any other
    # status would reach the user as a misleading "check your connection".
    return HubError(401, None, DISABLED, detail=f"The release was withdrawn: "
                                                 f"{release.withdrawn_reason}")


def _gated_mode(release: Release) -> str | bool:
    if release.current_stage == "open":
        return False
    if release.current_stage == "gated":
        from releases.selectors import stage_rule

        return "auto" if stage_rule(release, "gated").access == "automatic" else "manual"
    return "manual"


def served_files(release: Release) -> list:
    """The files a revision of `release` holds: its pinned checkpoint's, with the lab's
    model.sig and release.intoto.json once the stage is signed (they take the place of a
    submitted file at either path)."""
    extra = signed_files(release)
    reserved = {f.path for f in extra}
    return [f for f in release.published_checkpoint.files.all() if f.path not in reserved] + extra


def model_info_json(release: Release, *, blobs: bool) -> dict:
    checkpoint = release.published_checkpoint
    family = checkpoint.family
    files = served_files(release)
    census = checkpoint.census
    siblings = []
    for f in files:
        entry = {"rfilename": f.path}
        if blobs:
            pointer = _lfs_pointer(f.blob_id, f.size)
            entry.update({"size": f.size, "blobId": _git_oid(pointer),
                          "lfs": {"sha256": f.blob_id, "size": f.size,
                                  "pointerSize": len(pointer)}})
        siblings.append(entry)
    architecture = census.get("architecture") or {}
    info = {
        "_id": f"stagegate-{release.pk}",
        "id": family.repo_id, "modelId": family.repo_id, "author": family.org,
        "sha": checkpoint.commit,
        "lastModified": _zulu(release.stage_entered_at or release.updated_at),
        "createdAt": _zulu(checkpoint.created_at),
        "private": release.current_stage not in ("open", "gated"),
        "gated": _gated_mode(release), "disabled": False,
        "downloads": 0, "likes": 0,
        "tags": ["stagegate", f"stage:{release.current_stage}"]
                + (["safetensors"] if "safetensors" in census.get("formats", []) else []),
        "siblings": siblings, "spaces": [],
        "usedStorage": sum(f.size for f in files),
        "stagegate": {"release": release.pk, "stage": release.current_stage,
                      "label": checkpoint.label, "manifest_digest": checkpoint.manifest_digest,
                      "signed": any(isinstance(f, SignedFile) for f in files)},
    }
    if architecture.get("architectures"):
        info["config"] = {"architectures": architecture["architectures"],
                          "model_type": architecture.get("model_type")}
        info["library_name"] = "transformers"
        if any(a.endswith("ForCausalLM") or a.endswith("LMHeadModel")
               for a in architecture["architectures"]):
            info["pipeline_tag"] = "text-generation"
    by_dtype = census.get("parameters", {}).get("by_dtype", {})
    if "safetensors" in census.get("formats", []):
        info["safetensors"] = {"parameters": by_dtype, "total": census["parameters"]["total"]}
    card = model_card(files)
    if card and card.front_matter:
        info["cardData"] = card.front_matter
    return info


def _hub_view(fn):
    @csrf_exempt
    @require_http_methods(["GET", "HEAD"])
    def view(request, *args, **kwargs):
        try:
            return fn(request, Caller(request), *args, **kwargs)
        except HubError as error:
            return error.response(request.method)

    view.__name__ = fn.__name__
    return view


@_hub_view
def model_info(request, caller: Caller, org: str, name: str, rev: str | None = None):
    blobs = request.GET.get("blobs") in ("1", "true", "True")
    try:
        release = resolve(caller, org, name, rev)
    except HubError as error:
        # A family's owners also see what they committed and nobody released yet (the
        # client reads it after a commit that changed nothing, and before deleting files).
        checkpoint = unreleased_checkpoint(caller.user, org, name, rev) \
            if error.code in UNRELEASED_FALLBACK else None
        if checkpoint is None:
            raise
        return JsonResponse(unreleased_info_json(checkpoint, blobs=blobs))
    return JsonResponse(model_info_json(release, blobs=blobs))


@_hub_view
def tree(request, caller: Caller, org: str, name: str, rev: str, path: str = ""):
    try:
        release = resolve(caller, org, name, rev)
        checkpoint, files = release.published_checkpoint, served_files(release)
    except HubError as error:
        checkpoint = unreleased_checkpoint(caller.user, org, name, rev) \
            if error.code in UNRELEASED_FALLBACK else None  # owners, as above
        if checkpoint is None:
            raise
        files = list(checkpoint.files.all())
    recursive = request.GET.get("recursive", "false").lower() in ("1", "true")
    path = path.strip("/")
    entries = _tree_entries(files, path, recursive)
    if entries is None:
        raise HubError(404, "EntryNotFound", f"{path} does not exist on {rev}",
                       commit=checkpoint.commit)
    cursor = request.GET.get("cursor", "0") or "0"
    if not cursor.isdigit():
        raise HubError(400, None, f"cursor={cursor!r}: use the whole number from the Link header")
    cursor = int(cursor)
    page = entries[cursor:cursor + TREE_PAGE_SIZE]
    response = JsonResponse(page, safe=False)
    if cursor + TREE_PAGE_SIZE < len(entries):
        query = request.GET.copy()
        query["cursor"] = str(cursor + TREE_PAGE_SIZE)
        response["Link"] = f'<{request.build_absolute_uri(request.path)}?{query.urlencode()}>; rel="next"'
    return response


def _tree_entries(files: list, path: str, recursive: bool) -> list[dict] | None:
    prefix = f"{path}/" if path else ""
    inside = [f for f in files if f.path.startswith(prefix)]
    if path and not inside:
        return None
    entries: dict[str, dict] = {}
    for f in inside:
        rest = f.path[len(prefix):]
        parts = rest.split("/")
        for depth in range(1, len(parts)):
            folder = prefix + "/".join(parts[:depth])
            if (recursive or depth == 1) and folder not in entries:
                entries[folder] = {"type": "directory", "path": folder,
                                   "oid": hashlib.sha1(folder.encode()).hexdigest(), "size": 0}
        if recursive or len(parts) == 1:
            pointer = _lfs_pointer(f.blob_id, f.size)
            entries[f.path] = {"type": "file", "path": f.path, "size": f.size,
                               "oid": _git_oid(pointer),
                               "lfs": {"oid": f.blob_id, "size": f.size,
                                       "pointerSize": len(pointer)}}
    return [entries[key] for key in sorted(entries)]


@_hub_view
def resolve_file(request, caller: Caller, org: str, name: str, rev: str, path: str):
    release = resolve(caller, org, name, rev)
    served = release.published_checkpoint
    commit = served.commit
    path = unicodedata.normalize("NFC", path)  # stored paths are NFC (models/formats/layout.py)
    file = next((f for f in served_files(release) if f.path == path), None)
    decision = access.download_access(caller.user, release)
    if not decision.allowed:
        if decision.code in ("not_granted", "anonymous", "expired", "revoked", "reconsent"):
            message = (f"Access to model {served.family.repo_id} is restricted: "
                       f"{decision.message}. Visit {settings.SITE_URL}/models/"
                       f"{served.family.repo_id}/ to ask for access.")
            raise HubError(401 if caller.anonymous else 403, "GatedRepo", message, commit=commit)
        raise withdrawn(release)
    if file is None:
        raise HubError(404, "EntryNotFound", f"{path} does not exist on {rev}", commit=commit)
    return file_response(request, release=release, file=file, user=caller.user)


def hub_urls():
    from django.urls import re_path

    from releases.hub_access import hub_access_urls

    repo = r"(?P<org>[A-Za-z0-9][A-Za-z0-9._-]*)/(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)"
    rev = r"(?P<rev>refs/(?:pr/\d+|convert/\w+)|[^/]+)"
    return [
        re_path(rf"^api/models/{repo}$", model_info, name="hub-model-info"),
        re_path(rf"^api/models/{repo}/revision/{rev}$", model_info, name="hub-model-revision"),
        re_path(rf"^api/models/{repo}/tree/{rev}(?:/(?P<path>.+))?$", tree, name="hub-tree"),
        re_path(rf"^{repo}/resolve/{rev}/(?P<path>.+)$", resolve_file, name="hub-resolve"),
        *hub_access_urls(),
    ]


