"""Records the permission refusals of web pages (the API's are recorded by its exception
handler), so that every refusal is in the audit log."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied

from audit.services import record_refusal_of


class RecordRefusalsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, PermissionDenied):
            record_refusal_of(exception, request)
        return None
