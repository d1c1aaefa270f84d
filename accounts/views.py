from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from accounts.models import ApiToken, TokenScope
from accounts.roles import user_roles
from accounts.services import TokenError, create_token, revoke_token


@login_required
def profile(request):
    new_token = request.session.pop("new_token", None)
    return render(request, "accounts/profile.html", {
        "tokens": request.user.api_tokens.all(),
        "scopes": TokenScope.choices,
        "roles": sorted(user_roles(request.user)),
        "new_token": new_token,
    })


@login_required
@require_POST
def token_create(request):
    try:
        _, raw = create_token(actor=request.user, user=request.user,
                              name=request.POST.get("name", ""),
                              scope=request.POST.get("scope", TokenScope.READ))
    except TokenError as exc:
        messages.error(request, str(exc))
        return redirect("accounts:profile")
    # Shown once, on the next page only; never stored in plain text.
    request.session["new_token"] = raw
    return redirect("accounts:profile")


@login_required
@require_POST
def token_revoke(request, token_id: int):
    token = get_object_or_404(ApiToken, pk=token_id, user=request.user)
    revoke_token(actor=request.user, token=token)
    messages.success(request, f"Token “{token.name}” revoked.")
    return redirect("accounts:profile")
