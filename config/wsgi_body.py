"""WSGI middleware: a request body that ends before its Content-Length is an error.

WSGI servers hand the application a stream that simply returns b"" when a client disconnects
mid-upload, and Django's multipart parser accepts a body that stops early. Without this, a
truncated upload could be stored as if it were whole. With it, reading past the early end raises
OSError, which Django reports as UnreadablePostError.
"""

from __future__ import annotations


class _StrictBody:
    def __init__(self, stream, length: int):
        self._stream = stream
        self._remaining = length

    def read(self, size: int = -1) -> bytes:
        if self._remaining <= 0:
            return b""
        want = self._remaining if size is None or size < 0 else min(size, self._remaining)
        data = self._stream.read(want)
        if not data:
            raise OSError(f"client disconnected with {self._remaining} bytes of the body unsent")
        self._remaining -= len(data)
        return data

    def readline(self, size: int = -1) -> bytes:
        if self._remaining <= 0:
            return b""
        want = self._remaining if size is None or size < 0 else min(size, self._remaining)
        data = self._stream.readline(want)
        if not data:
            raise OSError(f"client disconnected with {self._remaining} bytes of the body unsent")
        self._remaining -= len(data)
        return data

    def __iter__(self):
        while line := self.readline():
            yield line


class RequireFullBody:
    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > 0 and "wsgi.input" in environ:
            environ["wsgi.input"] = _StrictBody(environ["wsgi.input"], length)
        return self.app(environ, start_response)
