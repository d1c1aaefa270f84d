"""The hardening suite (issue 11): each module replays one class of attack, through a live
Stagegate where the attack is HTTP, and checks what the attacker gets, what is left on disk and
what the audit log says.

  test_untrusted_input.py       1. bad text and structure: a clear 400, never a 5xx
  test_error_pages.py           2. styled error pages; the debug page only under runserver
  test_refusals_audited.py      3. every refusal is an audit event (repeats aggregated)
  test_login_protection.py      4. lockout after repeated failures (passwords and tokens)
  test_refuse_before_reading.py 5. authenticate and check limits before a body byte is staged
  test_hidden_is_not_found.py   6. ids a caller may not see answer like ids that do not exist
  test_lookalike_paths.py       7. NFC paths, invisible characters, look-alike duplicates
  tests/audit/test_chain_columns.py  8. the audit hash covers every column
  test_production_settings.py   9. HSTS, secure redirect, CSP, check --deploy
  test_properties.py            hypothesis over the API's filters and the Hub's paths
  test_schemathesis.py          schemathesis against /api/v1/schema/ on a live server
"""

from __future__ import annotations

import pytest
import requests

from tests.conftest import token_for
from tests.releases.stages import grant, release_at


@pytest.fixture
def hub_world(transactional_db, personas, simple_policy):
    """Committed data for a live server: an open, a gated (erin granted) and a partners
    release (erin named), and read tokens for erin, mallory and alice."""
    releases = {
        "open": release_at(personas, "open", family="lab/open-gpt"),
        "gated": release_at(personas, "gated", family="lab/gated-gpt", seed=1),
        "partners": release_at(personas, "partners", family="lab/partner-gpt", seed=2),
    }
    grant(personas, releases["gated"], personas.erin)
    grant(personas, releases["partners"], personas.erin)
    tokens = {n: token_for(personas[n], "all") for n in ("erin", "mallory", "alice", "dave")}
    return personas, releases, tokens


@pytest.fixture
def people(transactional_db, personas):
    """Committed personas and a token (scope all) for each, for tests that need no release."""
    return personas, {name: token_for(user, "all") for name, user in personas.items()}


def bearer(token: str | None) -> dict:
    return {"Authorization": f"Bearer {token}"} if token else {}


def session_for(server, username: str, password: str | None = None) -> requests.Session:
    """A browser-like session signed in through the real login form."""
    session = requests.Session()
    page = session.get(f"{server.url}/login/")
    assert page.status_code == 200
    response = session.post(f"{server.url}/login/", data={
        "username": username, "password": password or f"{username}-pw",
        "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": f"{server.url}/login/"}, allow_redirects=False)
    assert response.status_code == 302, response.text[:500]
    return session


def csrf(session: requests.Session, server) -> dict:
    return {"X-CSRFToken": session.cookies.get("csrftoken", ""), "Referer": f"{server.url}/"}
