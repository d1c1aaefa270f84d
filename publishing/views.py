"""Pages of publishing: a family's targets (list, add), and the release page's "Sync now"."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from models.selectors import get_family
from publishing import selectors, services
from publishing.models import PublicationTarget
from releases.selectors import get_release


@login_required
def family_targets(request, org: str, name: str):
    family = get_family(request.user, org, name)
    values, status = {}, 200
    if request.method == "POST":
        values = {k: request.POST.get(k, "").strip() for k in ("endpoint", "remote_repo",
                                                                 "token_env")}
        try:
            target = services.add_publication_target(
                actor=request.user, family=family, endpoint=values["endpoint"],
                remote_repo=values["remote_repo"], token_env=values["token_env"],
                token=request.POST.get("token", "").strip())
        except services.PublicationInputError as exc:
            messages.error(request, str(exc))
            status = 400
        except PermissionDenied as exc:
            messages.error(request, str(exc))
            status = 403
        else:
            messages.success(request, f"Published stages of {family} are mirrored to "
                                      f"{target.remote_url} from now on.")
            return redirect("publishing:family-targets", org, name)
    return render(request, "publishing/family_targets.html", {
        "family": family, "targets": selectors.family_targets(family), "values": values,
        "can_configure": services.may_configure(request.user),
        "endpoints": services.allowed_endpoints()}, status=status)


@login_required
@require_POST
def sync_now(request, release_id: int, target_id: int):
    release = get_release(request.user, release_id)
    target = get_object_or_404(PublicationTarget, pk=target_id)
    try:
        services.request_sync(actor=request.user, release=release, target=target)
    except PermissionDenied as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Syncing {target.remote_url} now.")
    return redirect(release)
