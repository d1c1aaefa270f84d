"""Web pages of the registry. Views are thin: permission, validation, one service call."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_http_methods

from accounts.roles import RESEARCHERS, has_role
from models import selectors, services
from models.errors import SubmissionError
from models.uploads import install_upload_handler, staged_from_multipart


@login_required
def family_list(request):
    families = selectors.families_visible_to(request.user)
    return render(request, "registry/family_list.html", {
        "families": families,
        "can_submit": has_role(request.user, RESEARCHERS),
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
    template = ("registry/_checkpoint_status.html" if request.htmx
                else "registry/checkpoint_detail.html")
    return render(request, template, {
        "checkpoint": checkpoint,
        "census": checkpoint.census,
        "files": checkpoint.files.all(),
        "previous": selectors.previous_checkpoint(checkpoint),
    })


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

