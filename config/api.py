"""API conventions shared by every app: errors are JSON objects with a `detail` in words."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError as DjangoValidationError
from django.conf import settings
from rest_framework import exceptions, status
from rest_framework.parsers import FormParser, JSONParser
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from audit.services import record_refusal_of
from config import untrusted


class Conflict(exceptions.APIException):
    """The action is not allowed in the object's current state (HTTP 409)."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state."
    default_code = "conflict"


def exception_handler(exc, context):
    record_refusal_of(exc, context.get("request"))
    if isinstance(exc, untrusted.UntrustedInput):
        return Response({"detail": exc.message}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, DjangoValidationError):
        messages = exc.messages
        return Response({"detail": " ".join(messages)}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, PermissionDenied):
        return Response({"detail": str(exc) or "You do not have permission to do that."},
                        status=status.HTTP_403_FORBIDDEN)
    return drf_exception_handler(exc, context)


class BadRequest(exceptions.APIException):
    """The request is incomplete or malformed (HTTP 400), with a `detail` in words."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "The request is incomplete or malformed."
    default_code = "bad_request"


class StrictFormParser(FormParser):
    """urlencoded bodies (any method) through the same character rules as JSON."""

    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        try:
            for key, values in data.lists():
                untrusted.check_text(key, what="a form field name", single_line=True)
                for value in values:
                    untrusted.check_text(value, what=f"the form field {key}")
        except untrusted.UntrustedInput as exc:
            raise exceptions.ParseError(exc.message) from None
        return data


class StrictJSONParser(JSONParser):
    """JSON request bodies through the one validation layer (config/untrusted.py): at most
    STAGEGATE_MAX_JSON_BODY bytes (checked against Content-Length before a byte is read),
    nesting at most STAGEGATE_MAX_JSON_DEPTH levels, no NUL or control characters, no NaN, and
    an object at the top (every JSON body of this API is one), so that no view meets a bare
    `true` or list where it reads fields."""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.STAGEGATE_MAX_JSON_BODY
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        if declared and declared.isdigit() and int(declared) > limit:
            raise exceptions.ParseError(f"the JSON body is {declared} bytes, more than the "
                                        f"{limit}-byte limit (STAGEGATE_MAX_JSON_BODY)")
        raw = stream.read(limit + 1) if stream is not None else b""
        if not raw:
            return {}
        try:
            data = untrusted.loads(raw, what="the JSON body", max_bytes=limit)
        except untrusted.UntrustedInput as exc:
            raise exceptions.ParseError(exc.message) from None
        if not isinstance(data, dict):
            kind = {bool: "a boolean", list: "an array", str: "a string", int: "a number",
                    float: "a number", type(None): "null"}[type(data)]
            raise exceptions.ParseError(f"the JSON body must be an object ({{\"field\": ...}}), "
                                        f"not {kind}")
        return data
