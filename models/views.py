"""Web pages of the registry. Views are thin: permission, validation, one service call."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import JsonResponse
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django_htmx.http import HttpResponseClientRefresh

from models.formats.layout import missing_tokenizer
from django.views.decorators.http import require_http_methods

from accounts.roles import RESEARCHERS, SAFETY, has_role
from models import conversion, scanning, selectors, services
from models.panels import checkpoint_panels
from models.errors import SubmissionError
from models.uploads import install_upload_handler, staged_from_multipart


@login_required
def family_list(request):
    from config.listing import page_of, query_without_page, search

    families = search(selectors.families_visible_to(request.user), request.GET.get("q", ""),
                      "org", "name", "description")
    page = page_of(request, families)
    return render(request, "registry/family_list.html", {
        "families": page, "page": page, "query": query_without_page(request),
        "q": request.GET.get("q", ""), "can_submit": has_role(request.user, RESEARCHERS),
    })


@login_required
def family_detail(request, org: str, name: str):
    family = selectors.get_family(request.user, org, name)
    checkpoints = selectors.checkpoints_visible_to(request.user).filter(family=family)
    return render(request, "registry/family_detail.html", {
        "family": family,
        "checkpoints": checkpoints,
        "can_submit": services.can_submit_to(request.user, family),
    })


@login_required
def checkpoint_detail(request, checkpoint_id: int):
    checkpoint = selectors.get_checkpoint(request.user, checkpoint_id)
    if request.htmx:
        # The badge polls while the scan runs; once it is over, every section of the page
        # (banner, census, scan report, evals) changed: reload it, once.
        if checkpoint.status in (checkpoint.Status.SCANNING, checkpoint.Status.RECEIVED):
            return render(request, "registry/_checkpoint_status.html", {"checkpoint": checkpoint})
        return HttpResponseClientRefresh()
    files = list(checkpoint.files.select_related("risk_accepted_by"))
    reports = scanning.scan_reports(checkpoint)
    return render(request, "registry/checkpoint_detail.html", {
        "checkpoint": checkpoint,
        "census": checkpoint.census,
        "files": files,
        "scanned": [(f, reports.get(f.path)) for f in files if f.needs_scan],
        "can_accept_risk": has_role(request.user, SAFETY)
                           and checkpoint.submitted_by_id != request.user.pk,
        "previous": selectors.previous_checkpoint(checkpoint),
        # A model folder (it has a config) without a tokenizer: say so before any eval fails.
        "tokenizer_problem": (missing_tokenizer(f.path for f in files)
                              if checkpoint.census.get("architecture") else None),
        "conversions": checkpoint.conversions.all(),
        "can_convert": (services.can_submit_to(request.user, checkpoint.family)
                        and conversion.convertible_refusal(checkpoint, files, reports) is None),
        "panels": [(panel, reverse(panel.url_name, args=[checkpoint.pk]))
                   for panel in checkpoint_panels()],
    })


@login_required
@require_http_methods(["POST"])
def checkpoint_convert(request, checkpoint_id: int):
    checkpoint = selectors.get_checkpoint(request.user, checkpoint_id)
    try:
        done = conversion.request_conversion(actor=request.user, checkpoint=checkpoint)
    except SubmissionError as exc:
        messages.error(request, exc.message)
    else:
        if done is not None:
            return redirect(done)
        messages.success(request, "Conversion queued: a worker will load the weights with "
                                  "weights_only=True in a limited process and check every tensor.")
    return redirect(checkpoint)


@login_required
@require_http_methods(["POST"])
def checkpoint_accept_risk(request, checkpoint_id: int):
    checkpoint = selectors.get_checkpoint(request.user, checkpoint_id)
    file = get_object_or_404(checkpoint.files, path=request.POST.get("path", ""))
    try:
        scanning.accept_scan_risk(actor=request.user, file=file,
                                  justification=request.POST.get("justification", ""))
    except SubmissionError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Risk accepted for {file.path}.")
    return redirect(checkpoint)


@csrf_exempt
@login_required
@require_http_methods(["GET", "POST"])
def checkpoint_submit(request):
    # The handler must be in place before the CSRF check reads request.POST, so the upload is
    # parsed once, by it: csrf_exempt here, csrf_protect on the inner view.
    if request.method == "POST":
        install_upload_handler(request)
    return _checkpoint_submit(request)


@csrf_protect
def _checkpoint_submit(request):
    families = selectors.families_visible_to(request.user)
    context = {"families": families, "can_submit": has_role(request.user, RESEARCHERS),
               "family": request.GET.get("family", ""),
               "max_file_size": settings.STAGEGATE_MAX_FILE_SIZE}
    if request.method == "GET":
        return render(request, "registry/checkpoint_submit.html", context)
    wants_json = request.headers.get("Accept", "").startswith("application/json")
    try:
        fields, staged = staged_from_multipart(request)
        context.update(family=fields.get("family", ""), label=fields.get("label", ""))
        checkpoint = services.submit_checkpoint(
            actor=request.user, family_name=fields.get("family", "").strip(),
            label=fields.get("label", "").strip(), files=staged)
    except (SubmissionError, PermissionDenied) as exc:
        message, status = ((exc.message, exc.status) if isinstance(exc, SubmissionError)
                           else (str(exc), 403))
        if wants_json:
            return JsonResponse({"detail": message}, status=status)
        context["error"] = message
        return render(request, "registry/checkpoint_submit.html", context, status=status)
    if wants_json:
        return JsonResponse({"id": checkpoint.pk, "url": checkpoint.get_absolute_url()}, status=201)
    return redirect(checkpoint)

