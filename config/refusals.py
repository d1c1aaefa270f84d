"""Every refusal is an audit event, recorded here, in one place that no view can forget.

For each request, after the response is made:
- every `Refused` a service raised during the request and nothing recorded (a web view that
  caught it and showed it as a message, say) is recorded;
- any other 401 or 403 (a DRF permission class, an unauthenticated API call, a CSRF failure,
  the Hub refusing a download to an anonymous or ungranted caller, GET and HEAD alike) is a
  `permission.denied` event with the reason the caller was given;
- a 404 from a view that the URL resolved to (an object lookup: a hidden id answers exactly
  like a missing one) is an `access.not_found` event that names the object when it exists, so
  the log shows who probed what, though the caller cannot tell the difference. The Hub's
  RepoNotFound is such a 404; its EntryNotFound and RevisionNotFound are not refusals (the
  caller can see the repo).
Failed sign-ins and token failures are recorded where they happen (accounts/throttle.py). All
of it goes through audit.refusals, which folds repeats so a scanner cannot flood the log.
"""

from __future__ import annotations

from django.apps import apps
from django.core.exceptions import PermissionDenied
from django.http import Http404

from audit.refusals import RequestScope, record_refusal_event
from audit.services import record_refusal
from config.middleware import route_kind

# URL keyword arguments that name an object, for naming it in `access.not_found` events.
OBJECT_KWARGS = {
    "release_id": "releases.Release", "checkpoint_id": "registry.Checkpoint",
    "run_id": "evaluations.EvalRun", "request_id": "releases.AccessRequest",
    "grant_id": "releases.AccessGrant", "session_id": "registry.UploadSession",
    "token_id": "accounts.ApiToken",
}
# DRF routers name their `pk` routes after the basename.
PK_ROUTES = {"release": "releases.Release", "checkpoint": "registry.Checkpoint"}
NOT_REFUSALS = {"EntryNotFound", "RevisionNotFound"}


def client_address(request) -> str:
    return getattr(request, "axes_ip_address", None) or request.META.get("REMOTE_ADDR", "")


def _actor(request):
    user = getattr(request, "user", None)
    if getattr(user, "is_authenticated", False):
        return user
    # The Hub authenticates bearer tokens itself, outside DRF.
    from accounts.authentication import bearer_token_from
    from accounts.services import authenticate_token

    raw = bearer_token_from(request)
    token = authenticate_token(raw) if raw else None
    return token.user if token else None


def _reason(request, response) -> str:
    message = response.get("X-Error-Message")
    if message:
        return message
    data = getattr(response, "data", None)
    if isinstance(data, dict) and data.get("detail"):
        return str(data["detail"])
    return getattr(request, "_stagegate_refusal_reason", "") or response.reason_phrase


def _named_object(request):
    match = request.resolver_match
    if match is None:
        return None, None
    if route_kind(request.path_info) == "hub" and "org" in match.kwargs:
        org, name = match.kwargs["org"], match.kwargs.get("name", "")
        family = apps.get_model("registry", "ModelFamily").objects.filter(org=org, name=name).first()
        return family, f"{org}/{name}"
    label, value = None, None
    for kwarg, model_label in OBJECT_KWARGS.items():
        if kwarg in match.kwargs:
            label, value = model_label, match.kwargs[kwarg]
            break
    if label is None and "pk" in match.kwargs:
        label = PK_ROUTES.get((match.url_name or "").rsplit("-", 1)[0])
        value = match.kwargs["pk"]
    if label is None:
        return None, None
    try:
        obj = apps.get_model(label)._default_manager.filter(pk=int(value)).first()
    except (TypeError, ValueError, OverflowError):
        return None, f"{label}:{value}"
    return obj, f"{label}:{value}"


class RecordRefusals:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with RequestScope() as scope:
            response = self.get_response(request)
            self.record(request, response, scope.raised)
        return response

    def process_exception(self, request, exception):
        if isinstance(exception, (PermissionDenied, Http404)):
            request._stagegate_refusal_reason = str(exception)
        return None

    def record(self, request, response, raised: list) -> None:
        refusals = [r for r in raised if r.__traceback__ is not None]
        who = client_address(request)
        for refusal in refusals:
            record_refusal(refusal, who=who)
        if refusals or getattr(request, "_stagegate_auth_failed", False):
            return
        status = response.status_code
        action = f"{request.method} {request.path}"
        if status in (401, 403):
            record_refusal_event(actor=_actor(request), verb="permission.denied", action=action,
                                 reason=_reason(request, response), who=who,
                                 data={"status": status, "route": route_kind(request.path_info)})
        elif status == 404 and request.resolver_match is not None \
                and response.get("X-Error-Code") not in NOT_REFUSALS:
            obj, named = _named_object(request)
            record_refusal_event(actor=_actor(request), verb="access.not_found", action=action,
                                 reason=_reason(request, response), obj=obj, who=who,
                                 data={"status": 404, "route": route_kind(request.path_info),
                                       "object": named, "exists": obj is not None})
