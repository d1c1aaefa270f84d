"""Point 3: every refusal is an audit event, from one place that cannot be forgotten: the Hub
(GET and HEAD, anonymous included), web pages (also when the page caught the refusal and showed
it as a message), the API, and failed sign-ins. Repeats are folded so a scanner cannot flood
the log. A walk over every route of the URLconf checks that each answer that refuses left its
event."""

from __future__ import annotations

import re
import time

import pytest
import requests
from django.core.cache import cache
from django.test import override_settings
from django.urls import Resolver404, URLPattern, URLResolver, get_resolver, resolve

from audit.models import AuditEvent
from audit.services import verify_chain
from tests.hardening.conftest import bearer, csrf, session_for

pytestmark = pytest.mark.django_db(transaction=True)

REFUSALS = ("permission.denied", "access.not_found", "auth.login_failed")


def _new_events(since: int, **filters):
    return list(AuditEvent.objects.filter(id__gt=since, verb__in=REFUSALS, **filters)
                .order_by("id"))


def _last_id() -> int:
    last = AuditEvent.objects.order_by("-id").first()
    return last.pk if last else 0


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("who", ["anonymous", "mallory"])
def test_a_refused_hub_download_is_audited(hub_world, stagegate_server, method, who):
    personas, _, tokens = hub_world
    since = _last_id()
    response = requests.request(method, f"{stagegate_server.url}/lab/gated-gpt/resolve/main/"
                                "model.safetensors",
                                headers=bearer(tokens["mallory"] if who == "mallory" else None))
    assert response.status_code == (401 if who == "anonymous" else 403)
    assert response.headers["X-Error-Code"] == "GatedRepo"
    [event] = _new_events(since)
    assert event.verb == "permission.denied"
    assert event.actor_id == (personas.mallory.pk if who == "mallory" else None)
    assert event.data["action"] == f"{method} /lab/gated-gpt/resolve/main/model.safetensors"
    assert "restricted" in event.data["reason"] and event.data["route"] == "hub"


def test_a_hub_probe_of_a_hidden_repo_is_audited_and_names_it(hub_world, stagegate_server):
    personas, releases, tokens = hub_world
    since = _last_id()
    response = requests.get(f"{stagegate_server.url}/api/models/lab/partner-gpt",
                            headers=bearer(tokens["mallory"]))
    assert response.status_code == 404 and response.headers["X-Error-Code"] == "RepoNotFound"
    [event] = _new_events(since)
    assert event.verb == "access.not_found" and event.actor_id == personas.mallory.pk
    assert event.data["object"] == "lab/partner-gpt" and event.data["exists"] is True
    assert event.object_type == "registry.modelfamily"


def test_a_withdraw_refused_through_the_web_page_is_audited(hub_world, stagegate_server):
    """The page catches the refusal and shows it as a message (302): still recorded."""
    personas, releases, _ = hub_world
    since = _last_id()
    browser = session_for(stagegate_server, "bob")  # a reviewer: sees it, may not withdraw
    response = browser.post(f"{stagegate_server.url}/releases/{releases['open'].pk}/withdraw/",
                            data={"reason": "I want to", "csrfmiddlewaretoken":
                                  browser.cookies["csrftoken"]},
                            headers=csrf(browser, stagegate_server), allow_redirects=False)
    assert response.status_code == 302
    [event] = _new_events(since)
    assert event.verb == "permission.denied" and event.actor_id == personas.bob.pk
    assert event.data["action"] == "release.withdraw"
    assert event.object_id == str(releases["open"].pk)


def test_a_csrf_failure_and_an_unauthenticated_api_call_are_audited(people, stagegate_server):
    since = _last_id()
    assert requests.get(f"{stagegate_server.url}/api/v1/releases/").status_code in (401, 403)
    assert requests.post(f"{stagegate_server.url}/login/",
                         data={"username": "x", "password": "y"}).status_code == 403
    reasons = [e.data["reason"] for e in _new_events(since)]
    assert any("credentials were not provided" in r for r in reasons)
    assert any("CSRF" in r or "Forbidden" in r for r in reasons)


def test_a_scanner_cannot_flood_the_log(people, stagegate_server):
    """200 anonymous hits on one refused URL and 200 on different ones write at most the burst
    (20) of events; each suppressed hit is counted on the next event written."""
    since = _last_id()
    for _ in range(200):
        requests.head(f"{stagegate_server.url}/api/v1/releases/")
    for n in range(200):
        requests.head(f"{stagegate_server.url}/api/v1/releases/{n}/")
    written = _new_events(since)
    assert 1 <= len(written) <= 20
    with override_settings(STAGEGATE_REFUSAL_WINDOW_SECONDS=1):
        cache.clear()  # a new window, and the counts start again
        since = _last_id()
        deadline = time.monotonic() + 10
        folded = []
        requests.head(f"{stagegate_server.url}/api/v1/releases/")
        while not folded and time.monotonic() < deadline:
            for _ in range(5):
                requests.head(f"{stagegate_server.url}/api/v1/releases/")
            folded = [e for e in _new_events(since) if e.data.get("repeats_folded")]
        assert folded, "the repeats were never counted on a later event"
        assert folded[0].data["repeats_folded"] >= 5
    assert verify_chain() is None


# --- the walk ---------------------------------------------------------------------------------

def _routes(resolver=None, prefix=""):
    resolver = resolver or get_resolver()
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            yield from _routes(entry, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry


def _concrete(pattern: str, values: dict) -> str | None:
    """A URL for the pattern, with ids of real objects; None for patterns we cannot fill."""
    if "^" in pattern or "(?P" in pattern:  # the Hub's regexes and DRF's routes
        text = re.sub(r"(^|/)\^", r"\1", pattern).replace("$", "")
        text = text.replace(r"(?P<rev>refs/(?:pr/\d+|convert/\w+)|[^/]+)", str(values.get("rev")))
        text = re.sub(r"\(\?:/\(\?P<path>\.\+\)\)\?", "", text)
        text = re.sub(r"\(\?P<(\w+)>[^)]*\)(?:\\\.\(\?P<format>[^)]*\))?",
                      lambda m: str(values.get(m[1], "x")), text)
        text = text.replace("\\.", ".").replace("/?", "/")
        if any(c in text for c in "()[]?*+\\"):
            return None
        return "/" + text
    text = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(values.get(m[1], "x")), pattern)
    return "/" + text


def test_every_route_that_refuses_leaves_its_event(hub_world, stagegate_server):
    personas, releases, tokens = hub_world
    hidden = releases["partners"]
    values = {"release_id": hidden.pk, "pk": hidden.pk, "checkpoint_id": hidden.checkpoint_id,
              "run_id": 1, "request_id": 1, "grant_id": 1, "session_id": 1, "token_id": 1,
              "target_id": 1, "number": 1, "oid": "0" * 40, "xorb_hash": "0" * 64,
              "status": "pending",
              "org": "lab", "name": "partner-gpt", "rev": "main", "path": "config.json",
              "repo_id": "lab/partner-gpt", "eval_name": "integrity", "metric": "passed"}
    browser = session_for(stagegate_server, "mallory")
    checked = []
    for pattern, entry in _routes():
        if "admin/" in pattern or (entry.name or "") in ("logout",):
            continue
        url = _concrete(pattern, values)
        if url is None:
            continue
        try:
            resolve(url)
        except Resolver404:
            pytest.fail(f"{pattern}: the walk filled it as {url}, which does not resolve; add "
                        "its URL arguments to `values`")
        api = url.startswith("/api/")
        for method in ("GET", "HEAD", "POST"):
            cache.clear()
            since = _last_id()
            if api or "/resolve/" in url:
                response = requests.request(method, stagegate_server.url + url, json={},
                                            headers=bearer(tokens["mallory"]),
                                            allow_redirects=False)
            else:
                response = browser.request(method, stagegate_server.url + url,
                                           data={"csrfmiddlewaretoken":
                                                 browser.cookies["csrftoken"]},
                                           headers=csrf(browser, stagegate_server),
                                           allow_redirects=False)
            assert response.status_code < 500, f"{method} {url} answered {response.status_code}"
            refused = response.status_code in (401, 403) or (
                response.status_code == 404
                and response.headers.get("X-Error-Code") not in ("EntryNotFound",
                                                                 "RevisionNotFound"))
            if not refused:
                continue
            events = _new_events(since)
            assert events, f"{method} {url} answered {response.status_code} with no audit event"
            assert all(e.actor_id in (personas.mallory.pk, None) for e in events)
            checked.append(f"{method} {url}")
    # The walk reached the Hub, the API and the pages.
    assert any("/resolve/" in c for c in checked)
    assert any(c.split()[1].startswith("/api/v1/") for c in checked)
    assert any(c.split()[1].startswith("/releases/") for c in checked)
    assert len(checked) >= 40, checked
    assert verify_chain() is None
