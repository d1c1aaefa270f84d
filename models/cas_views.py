"""The Xet CAS HTTP API inside Stagegate (`casUrl` = STAGEGATE_XET_CAS_URL, default
`<site>/xet`): xorb upload, shard upload and the global-dedup query, as the Xet protocol's
CAS API describes them. Downloads stay plain HTTP through /resolve, so reconstruction queries
are not served (404, the protocol's "not found")."""

from __future__ import annotations

import logging
import time

from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from audit.services import record_event
from models import blobstore
from models.xet import store
from models.xet.auth import CasDenied, authorize
from models.xet.formats import MAX_SHARD_SIZE, MAX_XORB_SIZE, XetFormatError
from models.xet.hashing import hex_to_hash

log = logging.getLogger("stagegate.xet")
READ_SIZE = 1024 * 1024


def _refuse(status: int, message: str) -> HttpResponse:
    return HttpResponse(message, status=status, content_type="text/plain")


def cas_view(methods):
    def decorate(fn):
        @csrf_exempt
        @require_http_methods(methods)
        def view(request, *args, **kwargs):
            try:
                user, family = authorize(request)
            except CasDenied as denied:
                if denied.status == 403:
                    record_event(actor=None, verb="permission.denied", data={
                        "action": f"{request.method} {request.path}", "reason": denied.message})
                return _refuse(denied.status, denied.message)
            try:
                return fn(request, user, family, *args, **kwargs)
            except (XetFormatError, ValueError) as exc:
                log.info("refused %s %s: %s", request.method, request.path, exc)
                return _refuse(400, str(exc))
        view.__name__ = fn.__name__
        return view
    return decorate


def _declared_length(request, limit: int) -> int:
    try:
        length = int(request.META.get("CONTENT_LENGTH") or "")
    except ValueError:
        raise ValueError("the upload needs a Content-Length header") from None
    if length <= 0 or length > limit:
        raise ValueError(f"a body of {length} bytes is empty or over the {limit} byte limit")
    return length


def _body(request, length: int):
    remaining = length
    while remaining > 0:
        chunk = request.read(min(READ_SIZE, remaining))
        if not chunk:
            raise ValueError("the body ended early")
        remaining -= len(chunk)
        yield chunk


@cas_view(["POST"])
def upload_xorb(request, user, family, xorb_hash):
    hex_to_hash(xorb_hash)
    started = time.monotonic()
    length = _declared_length(request, MAX_XORB_SIZE)
    try:
        staged = blobstore.stage_chunks("xorb", _body(request, length), max_size=MAX_XORB_SIZE,
                                        sha256=False)  # store_xorb checks its chunk hashes
    except OSError as exc:
        return _refuse(400, f"the xorb upload was interrupted ({exc})")
    received = time.monotonic()
    inserted = store.store_xorb(actor=user, xorb_hex=xorb_hash, local=staged.local_path)
    log.info("xorb %s received: %d bytes, inserted=%s (%.2f s receiving, %.2f s verifying)",
             xorb_hash, length, inserted, received - started, time.monotonic() - received)
    return JsonResponse({"was_inserted": inserted})


@cas_view(["POST"])
def upload_shard(request, user, family):
    length = _declared_length(request, MAX_SHARD_SIZE)
    data = b"".join(_body(request, length))
    new = store.register_shard(actor=user, family=family, data=data)
    log.info("shard received: %d bytes, %d new files", length, new)
    return JsonResponse({"result": 1 if new else 0})


@cas_view(["GET"])
def dedup_query(request, user, family, chunk_hash):
    shard = store.dedup_shard(chunk_hash)
    if shard is None:
        return _expected_404("chunk not tracked by global deduplication")
    return HttpResponse(shard, content_type="application/octet-stream")


@csrf_exempt
def not_offered(request, **kwargs):
    """What newer clients ask first and Stagegate does not offer: xorb upload grants (a URL to
    send the xorb to directly) and version 2 of the shard upload. The protocol's answer is 404,
    on which the client uses POST /v1/xorbs and /v1/shards."""
    log.debug("not offered: %s %s; the client falls back to /v1", request.method, request.path)
    return _expected_404("not offered here: upload xorbs with POST /v1/xorbs/default/{hash} and "
                         "shards with POST /v1/shards")


def _expected_404(message: str) -> HttpResponse:
    """A 404 that is part of the protocol (a dedup miss, a probe for what is not offered), which
    every upload gets many of: not logged as a missing page."""
    response = _refuse(404, message)
    response._has_been_logged = True  # Django's own flag, which its request logging honours
    return response


@csrf_exempt
def telemetry(request):
    """The client's fire-and-forget transfer telemetry: accepted and dropped."""
    return HttpResponse(status=200)


def cas_urls():
    from django.urls import re_path

    h = r"(?P<{}>[0-9a-f]{{64}})"
    return [
        re_path(rf"^xet/v1/xorbs/default/{h.format('xorb_hash')}$", upload_xorb,
                name="xet-xorb"),
        re_path(r"^xet/v1/shards$", upload_shard, name="xet-shard"),
        re_path(rf"^xet/v1/chunks/(?:default-merkledb|default)/{h.format('chunk_hash')}$", dedup_query,
                name="xet-dedup"),
        re_path(r"^xet/v1/telemetry$", telemetry, name="xet-telemetry"),
        re_path(r"^xet/v1/xorb-(?:grants|commits)/", not_offered, name="xet-grants"),
        re_path(r"^xet/v2/shards$", not_offered, name="xet-shards-v2"),
    ]
