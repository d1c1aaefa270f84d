"""The lab's public keys, where anyone can fetch them: the current one at
/.well-known/stagegate/signing-key.pem, every key still valid for verification (current, then
retired) at /.well-known/stagegate/signing-keys.pem, and one by id."""

from __future__ import annotations

import re

from django.http import HttpResponse
from django.views.decorators.http import require_http_methods

from signing import keys

KEY_ID_RE = re.compile(r"^[0-9a-f]{64}$")


def _pem(text: str, status: int = 200) -> HttpResponse:
    response = HttpResponse(text, status=status, content_type="application/x-pem-file")
    response["Cache-Control"] = "public, max-age=300"
    response["Access-Control-Allow-Origin"] = "*"
    return response


def _unavailable(exc: Exception) -> HttpResponse:
    return HttpResponse(f"No signing key is configured: {exc}\n", status=503,
                        content_type="text/plain; charset=utf-8")


@require_http_methods(["GET", "HEAD"])
def signing_key(request):
    try:
        key = keys.current_key()
    except keys.SigningKeyMissing as exc:
        return _unavailable(exc)
    response = _pem(key.public.pem)
    response["X-Stagegate-Key-Id"] = key.key_id
    return response


@require_http_methods(["GET", "HEAD"])
def signing_keys(request):
    published = keys.published_keys()
    if not published:
        return _unavailable(keys.SigningKeyMissing("set STAGEGATE_SIGNING_KEY_FILE"))
    return _pem("".join(f"# key id {k.key_id}{' (current)' if k.current else ' (retired)'}\n"
                        f"{k.pem}" for k in published))


@require_http_methods(["GET", "HEAD"])
def signing_key_by_id(request, key_id: str):
    key = keys.public_key(key_id) if KEY_ID_RE.match(key_id) else None
    if key is None:
        return HttpResponse(f"No published key has the id {key_id}: the lab's keys are listed at "
                            "/.well-known/stagegate/signing-keys.pem\n", status=404,
                            content_type="text/plain; charset=utf-8")
    return _pem(key.pem)


def signing_urls():
    from django.urls import path

    return [
        path(".well-known/stagegate/signing-key.pem", signing_key, name="signing-key"),
        path(".well-known/stagegate/signing-keys.pem", signing_keys, name="signing-keys"),
        path(".well-known/stagegate/keys/<str:key_id>.pem", signing_key_by_id,
             name="signing-key-by-id"),
    ]
