"""Point 1: bad text and structure get a 400 that names the problem (the Hub's error shape on
Hub routes), never a 5xx, and leave nothing behind. Replayed against a live server."""

from __future__ import annotations

import json

import pytest
import requests

from tests.checkpoints import raw_safetensors
from tests.conftest import StateSnapshot
from tests.hardening.conftest import bearer, csrf, session_for

pytestmark = pytest.mark.django_db(transaction=True)

DEEP = 100_000


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("path", [
    "/lab/open-gpt/resolve/main/config.json%00",
    "/lab/open-gpt/resolve/main%00/model.safetensors",
    "/api/models/lab/open-gpt/revision/main%00",
    "/api/models/lab/open-gpt/tree/main/a%00b",
    "/api/models/lab/open-gpt/revision/main%01",
])
def test_a_control_character_in_a_hub_path_is_the_hubs_400(hub_world, stagegate_server,
                                                             method, path):
    response = requests.request(method, stagegate_server.url + path)
    assert response.status_code == 400
    assert "the URL path contains" in response.headers["X-Error-Message"]
    if method == "GET":
        assert "remove it" in response.json()["error"]
    else:
        assert response.content == b""


@pytest.mark.parametrize("path", [
    "/api/v1/releases/?status=%00",
    "/api/v1/audit/?actor=bob%00",
    "/api/v1/audit/?verb=%00release",
    "/api/v1/checkpoints/?family=lab%00/open-gpt",
    "/api/v1/access-requests/?status=pending%00",
    "/api/v1/evals/runs/?checkpoint=1%00",
])
def test_a_nul_in_an_api_filter_is_a_400_that_names_it(people, stagegate_server, path):
    _, tokens = people
    response = requests.get(stagegate_server.url + path, headers=bearer(tokens["dave"]))
    assert response.status_code == 400, response.text[:300]
    assert "NUL byte" in response.json()["detail"]


@pytest.mark.parametrize("value", ["abc", "1.5", "9" * 5000, "-", "0x10"])
def test_a_checkpoint_filter_that_is_not_a_whole_number_is_a_400(people, stagegate_server,
                                                                   value):
    _, tokens = people
    response = requests.get(f"{stagegate_server.url}/api/v1/evals/runs/",
                            params={"checkpoint": value}, headers=bearer(tokens["alice"]))
    assert response.status_code == 400
    assert "not a whole number" in response.json()["detail"]


def test_a_nul_in_a_web_form_is_a_styled_400(hub_world, stagegate_server):
    _, releases, _ = hub_world
    browser = session_for(stagegate_server, "alice")
    response = browser.post(f"{stagegate_server.url}/releases/{releases['open'].pk}/comment/",
                            data={"comment": "looks fine\x00",
                                  "csrfmiddlewaretoken": browser.cookies["csrftoken"]},
                            headers=csrf(browser, stagegate_server))
    assert response.status_code == 400
    assert "<title>400" in response.text and "NUL byte" in response.text


@pytest.mark.parametrize("body,problem", [
    ("[" * DEEP + "]" * DEEP, "nested more than 64 levels deep"),
    ('{"a":' * 70 + "1" + "}" * 70, "nested more than 64 levels deep"),
    ('{"checkpoint": 1, "assessment": {"intended_use": "x\\u0000"}}', "NUL byte"),
    ('{"checkpoint": NaN}', "NaN is not a JSON number"),
    ('{"checkpoint": ' + "1" * 5000 + "}", "not valid JSON"),
    ('{"checkpoint": 1', "not valid JSON"),
])
def test_a_hostile_json_body_is_a_400_that_names_the_problem(people, stagegate_server, body,
                                                               problem):
    _, tokens = people
    response = requests.post(f"{stagegate_server.url}/api/v1/releases/", data=body,
                             headers={**bearer(tokens["alice"]),
                                      "Content-Type": "application/json"})
    assert response.status_code == 400, response.text[:300]
    assert problem in response.json()["detail"]


@pytest.mark.parametrize("body", ["true", "[]", '["licence_version", "accept"]', '"x"', "1",
                                  "null"])
@pytest.mark.parametrize("route", ["access-requests", "releases", "comment"])
def test_a_json_body_that_is_not_an_object_is_a_400_everywhere(hub_world, stagegate_server, body,
                                                                 route):
    """Every JSON body of the REST API is an object: a bare `true` or list is refused by the
    parser, before a view reads fields from it (it was a 500 on access requests)."""
    _, releases, tokens = hub_world
    path = {"access-requests": f"/api/v1/releases/{releases['gated'].pk}/access-requests/",
            "releases": "/api/v1/releases/",
            "comment": f"/api/v1/releases/{releases['open'].pk}/comment/"}[route]
    snapshot = StateSnapshot()
    response = requests.post(stagegate_server.url + path, data=body,
                             headers={**bearer(tokens["dave"]),
                                      "Content-Type": "application/json"})
    assert response.status_code == 400, response.text[:300]
    detail = response.json()["detail"]
    assert "the JSON body must be an object" in detail and "not " in detail, detail
    snapshot.assert_unchanged()


def test_a_json_body_over_the_limit_is_refused_before_it_is_read(people, stagegate_server):
    _, tokens = people
    body = json.dumps({"checkpoint": 1, "assessment": {"intended_use": "x" * 2_000_000}})
    response = requests.post(f"{stagegate_server.url}/api/v1/releases/", data=body,
                             headers={**bearer(tokens["alice"]),
                                      "Content-Type": "application/json"})
    assert response.status_code == 400
    assert "STAGEGATE_MAX_JSON_BODY" in response.json()["detail"]


def _submit(server, token, files: dict[str, bytes], label: str):
    return requests.post(f"{server.url}/api/v1/checkpoints/", headers=bearer(token),
                         data={"family": "lab/open-gpt", "label": label},
                         files={f"path:{name}": (name, data) for name, data in files.items()})


@pytest.mark.parametrize("files,problem", [
    ({"model.safetensors": raw_safetensors(("[" * DEEP + "]" * DEEP).encode())},
     "header is nested more than 64 levels deep"),
    ({"model.safetensors": raw_safetensors(b'{"a\\u0000": {"dtype": "F32", "shape": [1], '
                                           b'"data_offsets": [0, 4]}}', b"\0" * 4)},
     "NUL byte"),
    ({"model.safetensors": raw_safetensors(b'{"a": {"dtype": "F32", "shape": [NaN], '
                                           b'"data_offsets": [0, 4]}}', b"\0" * 4)},
     "NaN is not a JSON number"),
    ({"model.safetensors": raw_safetensors({"a": {"dtype": "F32", "shape": [1],
                                                  "data_offsets": [0, 4]}}, b"\0" * 4),
      "config.json": ("[" * DEEP + "]" * DEEP).encode()},
     "config.json is nested more than 64 levels deep"),
])
def test_hostile_headers_and_config_are_a_400_and_leave_nothing(hub_world, stagegate_server,
                                                                files, problem):
    _, _, tokens = hub_world
    snapshot = StateSnapshot()
    response = _submit(stagegate_server, tokens["alice"], files, "hostile")
    assert response.status_code == 400, response.text[:300]
    assert problem in response.json()["detail"]
    snapshot.assert_unchanged()
