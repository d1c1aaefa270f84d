"""Request-wide guards that live in one place so no view can forget them.

RejectUntrustedInput refuses, before any view runs, a request whose path, query string or
urlencoded form carries a NUL byte or another control character (PostgreSQL cannot store NUL,
so such a value reaching a query would be a 500), and turns any UntrustedInput a view or
parser raises into a 400 that names the problem, in the shape of the route: the Hub's error
headers on Hub routes, `{"detail": ...}` on the API, the styled error page elsewhere.
"""

from __future__ import annotations

import json
import re

from django.http import HttpResponse, JsonResponse
from django.template.loader import render_to_string

from config.untrusted import UntrustedInput, check_text

HUB_ROUTE = re.compile(r"^/(?:api/models/|api/repos/|[^/]+/[^/]+/resolve/)")


def route_kind(path: str) -> str:
    if HUB_ROUTE.match(path):
        return "hub"
    if path.startswith("/api/"):
        return "api"
    return "web"


def hub_error(status: int, message: str, method: str = "GET", code: str | None = None
              ) -> HttpResponse:
    """The Hub's error shape (shared/reference/hf-hub-http-contract.md): a JSON `error`, and
    X-Error-Message (and X-Error-Code when there is one) so the client can raise the right
    exception; HEAD answers carry no body."""
    body = b"" if method == "HEAD" else json.dumps({"error": message}).encode()
    response = HttpResponse(body, status=status, content_type="application/json")
    if code:
        response["X-Error-Code"] = code
    response["X-Error-Message"] = message
    return response


def bad_request(request, message: str) -> HttpResponse:
    kind = route_kind(request.path_info)
    if kind == "hub":
        return hub_error(400, message, request.method)
    if kind == "api":
        return JsonResponse({"detail": message}, status=400)
    return HttpResponse(render_to_string("400.html", {"message": message}, request=request),
                        status=400)


class RejectUntrustedInput:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            self.check(request)
        except UntrustedInput as exc:
            return bad_request(request, exc.message)
        return self.get_response(request)

    @staticmethod
    def check(request) -> None:
        check_text(request.path_info, what="the URL path", single_line=True)
        for key, values in request.GET.lists():
            check_text(key, what="a query parameter name", single_line=True)
            for value in values:
                check_text(value, what=f"the query parameter {key}", single_line=True)
        if request.content_type == "application/x-www-form-urlencoded" and request.method == "POST":
            for key, values in request.POST.lists():
                check_text(key, what="a form field name", single_line=True)
                for value in values:
                    check_text(value, what=f"the form field {key}")

    def process_exception(self, request, exception):
        if isinstance(exception, UntrustedInput):
            return bad_request(request, exception.message)
        return None
