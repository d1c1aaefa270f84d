"""The Hub's access-request API on Stagegate's Hub: what `HfApi(endpoint=stagegate)`'s
list_{pending,accepted,rejected}_access_requests, accept/reject/cancel_access_request and
grant_access call (hf-hub-http-contract.md §8; models-gated.md), mapped onto Stagegate's own
access requests and grants: one model, two interfaces.

The repo's release is the one its `main` serves the caller (releases.hub.resolve). Each person
is in one list: accepted while they hold an active grant, else pending while a request of
theirs waits, else rejected (a request rejected, or access revoked). Only those who may decide
(access.can_grant_access: release managers and family owners, never the release's submitter
or uploader) may read or change the lists; everyone else is refused in the Hub's error shape,
and each refusal is an audit event. A repo that is not gated answers 400, as on the Hub.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from audit.services import Refused, deny, record_refusal
from models.hub_http import Caller, HubError
from releases import access, access_decisions, clock
from releases.errors import ReleaseInputError, TransitionNotAllowed
from releases.hub import _zulu, resolve
from releases.models import AccessGrant, AccessRequest, Release

PAGE_SIZE = 100
STATUSES = ("pending", "accepted", "rejected")


@dataclass
class Entry:
    user: object
    status: str
    request_id: str
    at: object
    fields: dict | None

    def json(self) -> dict:
        user = self.user
        return {"user": {"user": user.get_username(),
                         "fullname": user.get_full_name() or user.get_username(),
                         "email": user.email or None},
                "requestId": self.request_id, "status": self.status,
                "timestamp": _zulu(self.at), "fields": self.fields}


def _fields(request: AccessRequest | None) -> dict | None:
    """The answers as the Hub shows them: the form's fields and the licence checkbox (which
    Stagegate records as the licence version accepted, not as an answer)."""
    if request is None:
        return None
    fields = dict(request.answers or {})
    if request.licence_version:
        fields["accept"] = True
    return fields


def entries(release: Release) -> dict[str, Entry]:
    """Everyone who asked for or was given access to the release, by user name, in one list."""
    now = clock.now()
    people: dict[str, Entry] = {}
    grants = list(AccessGrant.objects.filter(release=release).select_related("user", "request")
                  .order_by("granted_at", "id"))
    requests_ = list(AccessRequest.objects.filter(release=release).select_related("user")
                     .order_by("created_at", "id"))
    for grant in grants:
        if grant.is_active_at(now):
            request = grant.request
            people[grant.user.get_username()] = Entry(
                grant.user, "accepted", f"req-{request.pk}" if request else f"grant-{grant.pk}",
                grant.granted_at, _fields(request))
    for request in requests_:  # oldest first: a person's newest request decides
        name = request.user.get_username()
        if name in people and people[name].status == "accepted":
            continue
        if request.status in (AccessRequest.Status.PENDING, AccessRequest.Status.REJECTED):
            status = "pending" if request.status == AccessRequest.Status.PENDING else "rejected"
            people[name] = Entry(request.user, status, f"req-{request.pk}",
                                 request.decided_at or request.created_at, _fields(request))
    for grant in grants:
        name = grant.user.get_username()
        if name not in people and grant.revoked_at:
            people[name] = Entry(grant.user, "rejected", f"grant-{grant.pk}", grant.revoked_at,
                                 _fields(grant.request))
    return people


def access_release(caller: Caller, org: str, name: str) -> Release:
    """The release whose access requests the repo's lists are: the newest one at `gated` the
    caller can discover (a newer release still with partners does not hide it), else the one
    the repo's main serves them (whose errors, e.g. RepoNotFound, are the Hub's answer)."""
    gated = (access.discoverable_releases(caller.user)
             .filter(checkpoint__family__org=org, checkpoint__family__name=name,
                     current_stage="gated").exclude(status=Release.Status.WITHDRAWN)
             .order_by("-published_checkpoint__created_at", "-id").first())
    return gated or resolve(caller, org, name, None)


def _operation(request, view: str, kwargs: dict) -> str:
    """The refused call as its audit action (distinct calls are distinct refusals; only repeats
    of one are aggregated): access.hub_api.list.pending, ….handle.accepted, ….grant."""
    detail = kwargs.get("status")
    if view == "handle":
        try:
            body = json.loads(request.body[:4096] or b"{}")
        except (ValueError, RequestDataTooBig):
            body = None
        status = body.get("status") if isinstance(body, dict) else None
        detail = status if status in STATUSES else None
    name = {"list_requests": "list"}.get(view, view)
    return ".".join(filter(None, ("access.hub_api", name, detail)))


def _hub_access_view(methods: list[str], scope: str):
    def decorate(fn):
        @csrf_exempt
        @require_http_methods(methods)
        @functools.wraps(fn)
        def view(request, org: str, name: str, **kwargs):
            try:
                caller = Caller(request)
                if caller.token is None:
                    # A token, never the session cookie: a web page must not be able to make a
                    # release manager's signed-in browser grant access (these views take no CSRF).
                    raise HubError(401, None, "Invalid credentials in Authorization header: "
                                   "send a Stagegate API token (scope read to list, all to decide)")
                release = access_release(caller, org, name)
                action = _operation(request, fn.__name__, kwargs)
                if caller.token is not None and not caller.token.allows(scope):
                    raise deny(actor=caller.user, action=action, obj=release,
                               reason=f"this API token has scope '{caller.token.scope}'; this "
                                      f"request needs '{scope}'")
                if not access.can_grant_access(caller.user, release):
                    raise deny(actor=caller.user, action=action, obj=release,
                               reason=access._grant_refusal(caller.user, release,
                                                            "deciding access requests"))
                if release.current_stage not in ("partners", "gated"):
                    raise HubError(400, None, f"{org}/{name} is not a gated repo: its release "
                                   f"is {release.current_stage}, so nobody asks for access")
                return fn(request, caller, release, **kwargs)
            except HubError as error:
                return error.response(request.method)
            except Refused as exc:
                record_refusal(exc)
                return HubError(403, None, exc.reason).response(request.method)
            except (TransitionNotAllowed, ReleaseInputError) as exc:
                return HubError(400, None, getattr(exc, "reason", None) or str(exc)).response()
        return view
    return decorate


def _body(request, allowed: set[str], required: set[str]) -> dict:
    try:
        body = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError):
        raise HubError(400, None, "the request body is not JSON") from None
    if not isinstance(body, dict):
        raise HubError(400, None, "the request body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise HubError(400, None, f"unknown keys: {', '.join(unknown)}")
    if required - set(body):
        raise HubError(400, None, f"missing: {', '.join(sorted(required - set(body)))}")
    return body


def _person(username) -> object:
    user = get_user_model().objects.filter(username=username).first() \
        if isinstance(username, str) else None
    if user is None:
        raise HubError(404, None, f"user {username!r} does not exist")
    return user


@_hub_access_view(["GET"], scope="read")
def list_requests(request, caller, release, status: str):
    items = sorted((e for e in entries(release).values() if e.status == status),
                   key=lambda e: (e.at, e.request_id))
    cursor = request.GET.get("cursor", "0")
    if not cursor.isdigit():
        raise HubError(400, None, f"cursor={cursor!r}: use the whole number from the Link header")
    start = int(cursor)
    response = JsonResponse([e.json() for e in items[start:start + PAGE_SIZE]], safe=False)
    if start + PAGE_SIZE < len(items):
        response["Link"] = (f'<{request.build_absolute_uri(request.path)}?cursor='
                            f'{start + PAGE_SIZE}>; rel="next"')
    return response


@_hub_access_view(["POST"], scope="all")
def handle(request, caller, release):
    body = _body(request, {"user", "requestId", "status", "rejectionReason"}, {"status"})
    if ("user" in body) == ("requestId" in body):
        raise HubError(400, None, "send exactly one of user and requestId")
    wanted = body["status"]
    if wanted not in STATUSES:
        raise HubError(400, None, "status must be accepted, rejected or pending")
    reason = body.get("rejectionReason")
    if reason is not None and (wanted != "rejected" or not isinstance(reason, str)
                               or len(reason) > 200):
        raise HubError(400, None, "rejectionReason is a text of at most 200 characters, sent "
                                  "only when rejecting")
    people = entries(release)
    if "user" in body:
        entry = people.get(_person(body["user"]).get_username())
    else:
        entry = next((e for e in people.values() if e.request_id == body["requestId"]), None)
    if entry is None:
        raise HubError(404, None, "no access request from this user on this repo")
    if entry.status == wanted:
        raise HubError(404, None, f"the access request is already {wanted}")
    _decide(caller.user, release, entry, wanted, reason or "")
    return JsonResponse({"user": entry.user.get_username(), "status": wanted})


def _decide(actor, release: Release, entry: Entry, wanted: str, reason: str) -> None:
    user = entry.user
    if wanted == "accepted":
        access_decisions.grant_gated_access(actor=actor, release=release, user=user,
                                            reason=reason or "accepted through the Hub API")
    elif wanted == "pending":
        access_decisions.return_to_pending(actor=actor, release=release, user=user,
                                           reason=reason or "cancelled through the Hub API")
    elif entry.status == "pending":
        pending = AccessRequest.objects.filter(release=release, user=user,
                                               status=AccessRequest.Status.PENDING).first()
        access.decide_access_request(actor=actor, request=pending, approve=False, reason=reason)
    else:
        now = clock.now()
        for grant in AccessGrant.objects.filter(release=release, user=user):
            if grant.is_active_at(now):
                access.revoke_grant(actor=actor, grant=grant,
                                    reason=reason or "rejected through the Hub API")


@_hub_access_view(["POST"], scope="all")
def grant(request, caller, release):
    user = _person(_body(request, {"user"}, {"user"})["user"])
    entry = entries(release).get(user.get_username())
    if entry is not None and entry.status == "accepted":
        raise HubError(400, None, f"{user.get_username()} already has access to this repo")
    access_decisions.grant_gated_access(actor=caller.user, release=release, user=user,
                                        reason="granted through the Hub API")
    return JsonResponse({"user": user.get_username(), "status": "accepted"})


def hub_access_urls():
    from django.urls import re_path

    repo = r"(?P<org>[A-Za-z0-9][A-Za-z0-9._-]*)/(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)"
    base = rf"^api/models/{repo}/user-access-request"
    return [
        re_path(rf"{base}/(?P<status>pending|accepted|rejected)$", list_requests,
                name="hub-access-list"),
        re_path(rf"{base}/handle$", handle, name="hub-access-handle"),
        re_path(rf"{base}/grant$", grant, name="hub-access-grant"),
    ]
