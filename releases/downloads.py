"""Serving a checkpoint file's bytes from the Storage API in constant memory.

STAGEGATE_DOWNLOAD_MODE:
- `stream` (default): Django streams the blob (FileResponse, so gunicorn uses sendfile); HTTP
  Range requests get 206 with Content-Range.
- `x-accel`: behind nginx, the response carries `X-Accel-Redirect` to an internal location that
  maps STAGEGATE_X_ACCEL_PREFIX onto the blob store; nginx sends the bytes (and ranges). On that
  internal redirect nginx keeps only a few of Django's headers (Content-Type, Content-Disposition,
  Cache-Control, Expires, Set-Cookie, Accept-Ranges); the server block in
  docs/nginx-stagegate.conf adds the Hub's back from `$upstream_http_*` (docs/deploy.md).
- `redirect`: a 302 to the storage's own (presigned) URL, e.g. S3, with the Hub's metadata
  headers on the redirect itself; the client then drops its token for that other origin.
Access is always decided before any of these.
"""

from __future__ import annotations

import mimetypes
import re

from django.conf import settings
from django.http import FileResponse, HttpResponse, StreamingHttpResponse
from django.utils.http import content_disposition_header

from models import blobstore
from releases import access

RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")
CHUNK = 1024 * 1024


def _metadata(response: HttpResponse, release, file) -> HttpResponse:
    response["X-Repo-Commit"] = release.published_checkpoint.commit
    response["ETag"] = f'"{file.blob_id}"'
    response["X-Linked-Etag"] = f'"{file.blob_id}"'
    response["X-Linked-Size"] = str(file.size)
    response["Accept-Ranges"] = "bytes"
    response["Cache-Control"] = "private, max-age=0, must-revalidate"
    return response


def _content_type(path: str) -> str:
    guess, _ = mimetypes.guess_type(path)
    return guess if guess and (guess.startswith("text/") or guess.endswith("json")) \
        else "application/octet-stream"


def parse_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """(start, end inclusive), None for no range, "unsatisfiable" for 416."""
    if not header:
        return None
    match = RANGE_RE.match(header.strip())
    if not match or (not match[1] and not match[2]):
        return None  # malformed or multi-range: serve the whole file, as RFC 9110 allows
    if not match[1]:
        length = int(match[2])
        if length == 0:
            return "unsatisfiable"
        return max(size - length, 0), size - 1
    start = int(match[1])
    end = int(match[2]) if match[2] else size - 1
    if start >= size or end < start:
        return "unsatisfiable"
    return start, min(end, size - 1)


def _ranged(stream, start: int, length: int):
    try:
        stream.seek(start)
        remaining = length
        while remaining > 0:
            chunk = stream.read(min(CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk
    finally:
        stream.close()


def file_response(request, *, release, file, user) -> HttpResponse:
    mode = settings.STAGEGATE_DOWNLOAD_MODE
    name = blobstore.blob_name(file.blob_id)
    filename = file.path.rsplit("/", 1)[-1]
    if request.method == "HEAD":
        # Answered here in every mode, without touching the bytes: the same metadata as the GET.
        response = HttpResponse(status=200, content_type=_content_type(file.path))
        response["Content-Length"] = str(file.size)
        response["Content-Disposition"] = content_disposition_header(True, filename)
        return _metadata(response, release, file)

    byte_range = parse_range(request.headers.get("Range"), file.size)
    if byte_range == "unsatisfiable":
        response = HttpResponse(status=416)
        response["Content-Range"] = f"bytes */{file.size}"
        return _metadata(response, release, file)
    sent = file.size if byte_range is None else byte_range[1] - byte_range[0] + 1
    access.record_download(user=user, release=release, path=file.path, sha256=file.blob_id,
                           size=file.size, sent=sent,
                           byte_range=request.headers.get("Range") if byte_range else None)

    if mode == "redirect":
        response = HttpResponse(status=302)
        response["Location"] = blobstore.blob_storage().url(name)
        return _metadata(response, release, file)
    if mode == "x-accel":
        response = HttpResponse(content_type=_content_type(file.path))
        response["X-Accel-Redirect"] = f"{settings.STAGEGATE_X_ACCEL_PREFIX.rstrip('/')}/{name}"
        response["Content-Disposition"] = content_disposition_header(True, filename)
        response = _metadata(response, release, file)
        # nginx's static module announces ranges itself and would also copy ours: sent twice.
        del response["Accept-Ranges"]
        return response

    stream = blobstore.open_blob(file.blob_id)
    if byte_range is None:
        response = FileResponse(stream, content_type=_content_type(file.path))
        response["Content-Length"] = str(file.size)
    else:
        start, end = byte_range
        response = StreamingHttpResponse(_ranged(stream, start, end - start + 1), status=206,
                                         content_type=_content_type(file.path))
        response["Content-Range"] = f"bytes {start}-{end}/{file.size}"
        response["Content-Length"] = str(end - start + 1)
    response["Content-Disposition"] = content_disposition_header(True, filename)
    return _metadata(response, release, file)
