"""Bearer-token authentication for the REST API and the hub API, and token scopes."""

from __future__ import annotations

from rest_framework import authentication, exceptions, permissions

from accounts.services import authenticate_token
from accounts.throttle import LockedOut, check_token_allowed, token_failed


def bearer_token_from(request) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer sg_...`. A malformed or revoked token is a 401, never anonymous;
    an address with too many token failures is a 429 (accounts/throttle.py)."""

    def authenticate(self, request):
        raw = bearer_token_from(request)
        if raw is None:
            return None
        try:
            check_token_allowed(request._request)
        except LockedOut as exc:
            raise exceptions.Throttled(detail=exc.message) from None
        token = authenticate_token(raw)
        if token is None:
            token_failed(request._request, "api")
            raise exceptions.AuthenticationFailed(
                "Invalid or revoked API token. Create a new one on your profile page.")
        return token.user, token

    def authenticate_header(self, request):
        return 'Bearer realm="stagegate"'


class TokenScopePermission(permissions.BasePermission):
    """Token requests need the scope the view declares (`token_scope`), or `read` for safe
    methods and `all` for other writes. Session (browser) requests are not scoped."""

    message = "This API token's scope does not allow this request."

    def has_permission(self, request, view) -> bool:
        token = request.auth
        if token is None or not hasattr(token, "allows"):
            return True
        required = getattr(view, "token_scope", None)
        if isinstance(required, dict):
            required = required.get(getattr(view, "action", None) or request.method.lower())
        if required is None:
            required = "read" if request.method in permissions.SAFE_METHODS else "all"
        if not token.allows(required):
            self.message = (f"This API token has scope '{token.scope}'; this request needs "
                            f"'{required}'. Create a token with that scope on your profile page.")
            return False
        return True
