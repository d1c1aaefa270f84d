from __future__ import annotations

import json

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import render
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.views import APIView

from audit.models import AuditChainHead
from audit.sealing import lag
from audit.selectors import can_read_audit, event_json, filtered_events
from audit.services import deny


def _check(user) -> None:
    if not can_read_audit(user):
        raise deny(actor=user, action="audit.read",
                   reason="reading the audit log needs a reviewer or release manager role")


@login_required
def audit_log(request):
    _check(request.user)
    try:
        events = filtered_events(request.GET)
    except ValidationError as exc:
        return HttpResponseBadRequest(" ".join(exc.messages))
    page = Paginator(events, 100).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "audit/audit_log.html", {
        "page": page, "filters": request.GET, "query": query.urlencode(), "sealing": lag(),
        "sealed_through": AuditChainHead.objects.filter(pk=1).values_list("seq", flat=True)
        .first() or 0})


@login_required
def audit_export(request):
    """The filtered log as JSON Lines, streamed; each line carries its hash and prev_hash so the
    export can be verified on its own."""
    _check(request.user)
    try:
        events = filtered_events(request.GET).order_by("id")
    except ValidationError as exc:
        return HttpResponseBadRequest(" ".join(exc.messages))

    def lines():
        for event in events.iterator(chunk_size=2000):
            yield json.dumps(event_json(event), sort_keys=True) + "\n"

    response = StreamingHttpResponse(lines(), content_type="application/jsonl")
    response["Content-Disposition"] = 'attachment; filename="stagegate-audit.jsonl"'
    return response


class AuditEventListView(APIView):
    @extend_schema(responses={200: OpenApiTypes.OBJECT}, parameters=[
        OpenApiParameter(name, str, description=text) for name, text in (
            ("verb", "verb prefix, e.g. release."), ("actor", "username"),
            ("object", "type:id, e.g. releases.release:12"), ("since", "YYYY-MM-DD"),
            ("until", "YYYY-MM-DD"))] + [OpenApiParameter("page", int)])
    def get(self, request):
        """The audit log, newest first; filters `verb`, `actor`, `object=type:id`, `since`,
        `until`; paginated with `page`."""
        _check(request.user)
        from rest_framework.pagination import PageNumberPagination

        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(filtered_events(request.query_params), request, view=self)
        return paginator.get_paginated_response([event_json(event) for event in page])


