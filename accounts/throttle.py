"""Brute-force protection: django-axes for password sign-ins, and the same counters for bearer
tokens on the API and the Hub; every failure, lockout and unlock is an audit event.

Password sign-in: after STAGEGATE_LOGIN_FAILURE_LIMIT failures for one username, or from one
address, further attempts are refused (HTTP 429, the right password included) for
STAGEGATE_LOCKOUT_MINUTES, or until an administrator unlocks it (admin → Axes → Access attempts:
delete the row; or `manage.py axes_reset_username NAME` / `axes_reset_ip ADDRESS`).

Tokens: a request with a token that is not valid counts as a failure of its address (there is
no user to count it against); an address past the limit is refused every token, valid ones
included, until the lockout ends or is lifted the same way. Tokens are 256-bit random values,
so this limits noise and abuse, not a feasible guess.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.dispatch import receiver

from audit.refusals import record_refusal_event

TOKEN_CREDENTIAL = "stagegate_bearer_token"


class LockedOut(Exception):
    """Too many failures from this address (or for this user): refuse without checking."""

    def __init__(self):
        minutes = settings.STAGEGATE_LOCKOUT_MINUTES
        when = (f"try again in {minutes} minutes" if minutes else "the lock stays")
        super().__init__(f"Too many failed sign-ins from this address: it is locked out; {when} "
                         "or ask an administrator to unlock it.")
        self.message = str(self)


def lockout_parameters(request, credentials=None) -> list:
    """AXES_LOCKOUT_PARAMETERS: passwords are counted per username and per address (either
    locks), tokens per address only."""
    if credentials and credentials.get(TOKEN_CREDENTIAL):
        return ["ip_address"]
    return ["username", "ip_address"]


def _address(request) -> str:
    return getattr(request, "axes_ip_address", None) or request.META.get("REMOTE_ADDR", "")


def check_token_allowed(request) -> None:
    """Raise LockedOut when the caller's address may not present tokens now."""
    from axes.handlers.proxy import AxesProxyHandler

    if not AxesProxyHandler.is_allowed(request, {TOKEN_CREDENTIAL: True}):
        request.axes_locked_out = False  # answered in the API's or the Hub's own shape
        raise LockedOut()


def token_failed(request, route: str) -> None:
    """A bearer token that is not valid: counted by axes against the address, audited."""
    request._stagegate_auth_failed = True
    user_login_failed.send(sender=__name__, credentials={TOKEN_CREDENTIAL: True, "route": route},
                           request=request)
    # axes marks a request that reached the limit as locked out, and its middleware would
    # replace our answer with its own page; the API and the Hub answer in their own shapes.
    request.axes_locked_out = False


@receiver(user_login_failed)
def record_failed_login(sender, credentials, request=None, **kwargs):
    if request is None:
        return
    request._stagegate_auth_failed = True
    via = "token" if credentials.get(TOKEN_CREDENTIAL) else "password"
    username = "" if via == "token" else str(credentials.get("username", ""))[:150]
    record_refusal_event(actor=None, verb="auth.login_failed", action=f"sign in ({via})",
                         reason="wrong username or password" if via == "password"
                         else "invalid or revoked API token",
                         who=_address(request),
                         data={"username": username, "address": _address(request), "via": via,
                               "path": request.path})


def record_lockout(sender, request=None, username=None, ip_address=None, **kwargs):
    if request is not None:
        request._stagegate_auth_failed = True
    record_refusal_event(actor=None, verb="auth.locked_out", action="sign in",
                         reason="too many failed sign-ins", who=ip_address,
                         data={"username": username or "", "address": ip_address or ""})


def record_unlock(sender, instance, **kwargs):
    """An AccessAttempt deleted (by the admin, a reset command, or the cool-off's clean-up)."""
    from audit.services import record_event

    record_event(actor=None, verb="auth.unlocked", data={
        "username": instance.username or "", "address": instance.ip_address or "",
        "failures": instance.failures_since_start})


def connect() -> None:
    from axes.models import AccessAttempt
    from axes.signals import user_locked_out
    from django.db.models.signals import post_delete

    user_locked_out.connect(record_lockout, dispatch_uid="stagegate-lockout")
    post_delete.connect(record_unlock, sender=AccessAttempt, dispatch_uid="stagegate-unlock")
