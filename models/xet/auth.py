"""Xet access tokens: what `GET /api/models/{repo}/xet-write-token/main` hands the client for
the CAS. Signed with the site's SECRET_KEY; they name the user, the repo and the API token they
came from, and every CAS request checks all three again (a revoked token, a deactivated user or a
lost ownership ends a token's use at once, not at its expiry)."""

from __future__ import annotations

import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing

from accounts.models import ApiToken
from models import services
from models.models import ModelFamily

SALT = "stagegate.xet.cas"
TOKEN_PREFIX = "xet_"


class CasDenied(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def issue_write_token(*, user, family: ModelFamily, api_token: ApiToken | None) -> tuple[str, int]:
    expires = int(time.time()) + settings.STAGEGATE_XET_TOKEN_SECONDS
    claim = {"u": user.pk, "f": family.pk, "t": api_token.pk if api_token else None,
             "x": expires, "s": "write"}
    return TOKEN_PREFIX + signing.dumps(claim, salt=SALT, compress=True), expires


def authorize(request) -> tuple[object, ModelFamily]:
    """(user, family) of a CAS request's bearer token, or CasDenied (401: get a new token;
    403: not allowed)."""
    scheme, _, value = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "bearer" or not value.startswith(TOKEN_PREFIX):
        raise CasDenied(401, "send the Xet access token from xet-write-token as a Bearer token")
    try:
        claim = signing.loads(value[len(TOKEN_PREFIX):].strip(), salt=SALT)
    except signing.BadSignature:
        raise CasDenied(401, "this Xet token is not one Stagegate issued") from None
    if claim.get("x", 0) < time.time():
        raise CasDenied(401, "this Xet token has expired; ask xet-write-token for a new one")
    if claim.get("t") is not None and not ApiToken.objects.filter(
            pk=claim["t"], revoked_at__isnull=True).exists():
        raise CasDenied(401, "the API token behind this Xet token has been revoked")
    user = get_user_model().objects.filter(pk=claim.get("u"), is_active=True).first()
    family = ModelFamily.objects.filter(pk=claim.get("f")).first()
    if user is None or family is None or not services.can_submit_to(user, family):
        raise CasDenied(403, "this Xet token's user may no longer write to its repo")
    return user, family
