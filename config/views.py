"""Site-wide pages that belong to no app: where each person lands, the favicon."""

from __future__ import annotations

from django.shortcuts import redirect
from django.templatetags.static import static

from accounts.roles import POLICY, RELEASE_MANAGERS, SAFETY, is_lab_member, user_roles


def home(request):
    """Each person lands where their work is: reviewers on the queue of what waits for them,
    release managers on the releases (the approved ones are theirs to publish), the rest of the lab
    at the registry, and everyone else at the catalogue of what they may see."""
    user = request.user
    if not is_lab_member(user):
        return redirect("releases:catalogue")
    roles = user_roles(user)
    if roles & {SAFETY, POLICY}:
        return redirect("releases:review-queue")
    if RELEASE_MANAGERS in roles:
        return redirect("releases:release-list")
    return redirect("registry:family-list")


def favicon(request):
    return redirect(static("stagegate/favicon.svg"), permanent=True)


def login_elsewhere(request):
    """Django's default sign-in address, for links and habits that expect it."""
    query = request.META.get("QUERY_STRING", "")
    return redirect("/login/" + (f"?{query}" if query else ""), permanent=True)
