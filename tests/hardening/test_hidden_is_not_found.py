"""Point 6: ids a caller may not see answer exactly like ids that do not exist (the same 404
and the same body, the id aside), everywhere: access requests, grants, release grants,
releases, checkpoints, eval runs. Before, mallory got 403 for ids that exist and 404 for ids
that do not, which told her which exist. Replayed through a live server; the probe of a hidden
id is still in the audit log, naming the object."""

from __future__ import annotations

import re

import pytest
import requests

from audit.models import AuditEvent
from evaluations.models import EvalRun
from releases.models import AccessGrant, AccessRequest
from tests.hardening.conftest import bearer, csrf, session_for

pytestmark = pytest.mark.django_db(transaction=True)

MISSING = 987654321


def _ids(world):
    personas, releases, _ = world
    hidden = releases["partners"]  # mallory is no partner: she cannot even discover it
    return {
        "release": hidden.pk,
        "checkpoint": hidden.checkpoint_id,
        "run": EvalRun.objects.filter(checkpoint=hidden.checkpoint).first().pk,
        "request": AccessRequest.objects.get(user=personas.erin, release=releases["gated"]).pk,
        "grant": AccessGrant.objects.get(user=personas.erin, release=hidden).pk,
    }


API_PROBES = [
    ("GET", "/api/v1/releases/{release}/", None),
    ("POST", "/api/v1/releases/{release}/withdraw/", {"reason": "x"}),
    ("POST", "/api/v1/releases/{release}/approve/", {"stage": "gated"}),
    ("GET", "/api/v1/releases/{release}/grants/", None),
    ("POST", "/api/v1/releases/{release}/grants/", {"user": "mallory", "agreement_note": "x"}),
    ("POST", "/api/v1/releases/{release}/access-requests/", {"licence_version": "x",
                                                             "accept": True}),
    ("GET", "/api/v1/checkpoints/{checkpoint}/", None),
    ("GET", "/api/v1/evals/runs/{run}/", None),
    ("POST", "/api/v1/access-requests/{request}/approve/", {}),
    ("POST", "/api/v1/access-requests/{request}/reject/", {}),
    ("POST", "/api/v1/access-requests/bulk/", {"ids": ["{request}"], "decision": "approve"}),
    ("POST", "/api/v1/grants/{grant}/revoke/", {"reason": "x"}),
]


def _fill(template, ids: dict, key: str | None, value: int):
    if isinstance(template, str):
        return template.format(**{k: (value if k == key else v) for k, v in ids.items()})
    if isinstance(template, dict):
        return {k: _fill(v, ids, key, value) for k, v in template.items()}
    if isinstance(template, list):
        return [int(_fill(v, ids, key, value)) if isinstance(v, str) else v for v in template]
    return template


def _key(template: str, body) -> str:
    text = template + repr(body)
    return next(k for k in ("release", "checkpoint", "run", "request", "grant")
                if "{" + k + "}" in text)


def _comparable(response, value) -> tuple:
    """Status and body, the probed id and the (per-response masked) CSRF token aside."""
    text = re.sub(r'("X-CSRFToken": "|name="csrfmiddlewaretoken" value=")[^"]+', r"\1-",
                  response.text)
    return response.status_code, text.replace(str(value), "ID")


@pytest.mark.parametrize("method,template,body", API_PROBES,
                         ids=[f"{m} {t}" for m, t, _ in API_PROBES])
def test_a_hidden_id_answers_like_a_missing_one_on_the_api(hub_world, stagegate_server, method,
                                                          template, body):
    _, _, tokens = hub_world
    ids = _ids(hub_world)
    key = _key(template, body)
    answers = []
    for value in (ids[key], MISSING):
        path = _fill(template, ids, key, value)
        response = requests.request(method, stagegate_server.url + path,
                                    json=_fill(body, ids, key, value) if body is not None else None,
                                    headers=bearer(tokens["mallory"]))
        answers.append(_comparable(response, value))
    assert answers[0] == answers[1]
    assert answers[0][0] == 404


WEB_PROBES = [
    ("GET", "/releases/{release}/"),
    ("POST", "/releases/{release}/withdraw/"),
    ("POST", "/releases/{release}/decide/"),
    ("GET", "/checkpoints/{checkpoint}/"),
    ("GET", "/evals/runs/{run}/"),
    ("POST", "/models/lab/partner-gpt/releases/{release}/request-access/"),
]


@pytest.mark.parametrize("method,template", WEB_PROBES, ids=[f"{m} {t}" for m, t in WEB_PROBES])
def test_a_hidden_id_answers_like_a_missing_one_on_the_pages(hub_world, stagegate_server, method,
                                                            template):
    ids = _ids(hub_world)
    key = _key(template, None)
    browser = session_for(stagegate_server, "mallory")
    answers = []
    for value in (ids[key], MISSING):
        url = stagegate_server.url + _fill(template, ids, key, value)
        response = browser.request(method, url, headers=csrf(browser, stagegate_server),
                                   data={"csrfmiddlewaretoken": browser.cookies["csrftoken"],
                                         "reason": "x", "decision": "approve"},
                                   allow_redirects=False)
        answers.append(_comparable(response, value))
    assert answers[0] == answers[1]
    assert answers[0][0] == 404


def test_the_probe_of_a_hidden_release_is_audited_with_its_object(hub_world, stagegate_server):
    personas, releases, tokens = hub_world
    hidden = releases["partners"]
    for value in (hidden.pk, MISSING):
        requests.get(f"{stagegate_server.url}/api/v1/releases/{value}/",
                     headers=bearer(tokens["mallory"]))
    events = {e.data["object"]: e for e in AuditEvent.objects.filter(
        verb="access.not_found", actor=personas.mallory)}
    probe = events[f"releases.Release:{hidden.pk}"]
    assert probe.data["exists"] is True and probe.object_id == str(hidden.pk)
    assert events[f"releases.Release:{MISSING}"].data["exists"] is False


def test_an_access_request_of_ones_own_is_still_visible(hub_world, stagegate_server):
    """Visible ids keep their precise answer: erin may see her request but not decide it."""
    _, _, tokens = hub_world
    ids = _ids(hub_world)
    response = requests.post(f"{stagegate_server.url}/api/v1/access-requests/{ids['request']}/"
                             "approve/", json={}, headers=bearer(tokens["erin"]))
    assert response.status_code == 403
    assert "release_managers" in response.json()["detail"]
