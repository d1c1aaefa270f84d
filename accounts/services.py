from __future__ import annotations

import secrets

from django.db import transaction
from django.utils import timezone

from accounts.models import TOKEN_PREFIX, ApiToken, TokenScope, hash_token
from audit.services import record_event


class TokenError(ValueError):
    pass


def create_token(*, actor, user, name: str, scope: str) -> tuple[ApiToken, str]:
    """Create an API token for `user`; return it and the raw token, which is shown once only.

    Only the user themself (or a superuser) may create their tokens. Writes `token.created`.
    """
    if actor != user and not getattr(actor, "is_superuser", False):
        raise TokenError("you can only create tokens for yourself")
    if scope not in TokenScope.values:
        raise TokenError(f"unknown scope {scope!r}; use one of {', '.join(TokenScope.values)}")
    name = (name or "").strip() or "token"
    raw = TOKEN_PREFIX + secrets.token_urlsafe(30)
    with transaction.atomic():
        token = ApiToken.objects.create(user=user, name=name[:100], scope=scope,
                                        token_hash=hash_token(raw), hint=raw[:8])
        record_event(actor=actor, verb="token.created", obj=token,
                     data={"user": user.get_username(), "scope": scope, "name": token.name})
    return token, raw


def revoke_token(*, actor, token: ApiToken) -> ApiToken:
    """Revoke a token. Idempotent: revoking a revoked token changes nothing and logs nothing."""
    if actor != token.user and not getattr(actor, "is_superuser", False):
        raise TokenError("you can only revoke your own tokens")
    with transaction.atomic():
        token = ApiToken.objects.select_for_update().get(pk=token.pk)
        if token.revoked_at is not None:
            return token
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        record_event(actor=actor, verb="token.revoked", obj=token,
                     data={"user": token.user.get_username()})
    return token


def authenticate_token(raw: str) -> ApiToken | None:
    """The active token for this raw value, or None. Records when it was last used."""
    if not raw.startswith(TOKEN_PREFIX):
        return None
    token = (ApiToken.objects.select_related("user")
             .filter(token_hash=hash_token(raw), revoked_at__isnull=True).first())
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token
