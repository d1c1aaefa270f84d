"""API conventions shared by every app: errors are JSON objects with a `detail` in words."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError as DjangoValidationError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from audit.services import record_refusal_of


class Conflict(exceptions.APIException):
    """The action is not allowed in the object's current state (HTTP 409)."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state."
    default_code = "conflict"


def exception_handler(exc, context):
    record_refusal_of(exc, context.get("request"))
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
