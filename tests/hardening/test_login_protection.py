"""Point 4: brute force is stopped. The attack of the issue, 50 wrong passwords for bob and then
the right one, now ends locked out; failures are counted per user and per address (each from
its own loopback address, 127.0.0.x), every failure and lockout is audited, the admin can
unlock, and bad bearer tokens lock their address out of the API and the Hub alike."""

from __future__ import annotations

import pytest
import requests
from django.core.management import call_command
from requests.adapters import HTTPAdapter

from audit.models import AuditEvent
from tests.hardening.conftest import bearer

pytestmark = pytest.mark.django_db(transaction=True)


class _FromAddress(HTTPAdapter):
    def __init__(self, address: str):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def client_at(address: str) -> requests.Session:
    session = requests.Session()
    session.mount("http://", _FromAddress(address))
    return session


def sign_in(server, username: str, password: str, address: str = "127.0.0.1"):
    session = client_at(address)
    session.get(f"{server.url}/login/")
    response = session.post(f"{server.url}/login/", data={
        "username": username, "password": password,
        "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": f"{server.url}/login/"}, allow_redirects=False)
    return session, response


def signed_in(session, server) -> bool:
    return session.get(f"{server.url}/accounts/profile/", allow_redirects=False).status_code == 200


def test_fifty_wrong_passwords_then_the_right_one_is_locked_out(people, stagegate_server):
    for n in range(50):
        _, response = sign_in(stagegate_server, "bob", f"guess-{n}", "127.0.0.2")
        assert response.status_code in (200, 429)
    session, response = sign_in(stagegate_server, "bob", "bob-pw", "127.0.0.2")
    assert response.status_code == 429
    assert "Too many failed sign-ins" in response.text
    assert not signed_in(session, stagegate_server)
    failed = AuditEvent.objects.filter(verb="auth.login_failed")
    assert failed.exists() and all(e.data["username"] == "bob" for e in failed)
    # Folded, not one row per guess, but every guess counted.
    assert failed.count() < 10
    assert AuditEvent.objects.filter(verb="auth.locked_out").exists()


def test_failures_for_one_user_from_many_addresses_lock_that_user(people, stagegate_server):
    for n in range(5):
        sign_in(stagegate_server, "bob", "wrong", f"127.0.1.{n + 1}")
    session, response = sign_in(stagegate_server, "bob", "bob-pw", "127.0.1.99")
    assert response.status_code == 429 and not signed_in(session, stagegate_server)
    # Someone else is not affected.
    session, response = sign_in(stagegate_server, "carol", "carol-pw", "127.0.1.99")
    assert response.status_code == 302 and signed_in(session, stagegate_server)


def test_failures_from_one_address_lock_that_address(people, stagegate_server):
    for name in ("alice", "bob", "carol", "dave", "erin"):
        sign_in(stagegate_server, name, "wrong", "127.0.2.1")
    session, response = sign_in(stagegate_server, "mallory", "mallory-pw", "127.0.2.1")
    assert response.status_code == 429 and not signed_in(session, stagegate_server)
    session, response = sign_in(stagegate_server, "mallory", "mallory-pw", "127.0.2.2")
    assert response.status_code == 302 and signed_in(session, stagegate_server)


def test_the_admin_unlocks_a_user_through_the_admin_site(people, stagegate_server):
    from django.contrib.auth.models import User

    User.objects.create_superuser("root", "root@example.org", "root-pw")
    for _ in range(5):
        sign_in(stagegate_server, "bob", "wrong", "127.0.3.1")
    assert sign_in(stagegate_server, "bob", "bob-pw", "127.0.3.1")[1].status_code == 429

    admin, response = sign_in(stagegate_server, "root", "root-pw", "127.0.3.9")
    assert response.status_code == 302
    listing = admin.get(f"{stagegate_server.url}/admin/axes/accessattempt/?q=bob")
    assert listing.status_code == 200 and "bob" in listing.text
    from axes.models import AccessAttempt

    for attempt in AccessAttempt.objects.filter(username="bob"):
        page = admin.get(f"{stagegate_server.url}/admin/axes/accessattempt/{attempt.pk}/delete/")
        assert page.status_code == 200
        done = admin.post(f"{stagegate_server.url}/admin/axes/accessattempt/{attempt.pk}/delete/",
                          data={"post": "yes", "csrfmiddlewaretoken": admin.cookies["csrftoken"]},
                          headers={"Referer": f"{stagegate_server.url}/admin/"},
                          allow_redirects=False)
        assert done.status_code == 302
    session, response = sign_in(stagegate_server, "bob", "bob-pw", "127.0.3.1")
    assert response.status_code == 302 and signed_in(session, stagegate_server)
    unlocked = AuditEvent.objects.get(verb="auth.unlocked")
    assert unlocked.data["username"] == "bob" and unlocked.data["failures"] >= 5


def test_the_reset_command_unlocks_an_address(people, stagegate_server):
    for name in ("alice", "bob", "carol", "dave", "erin"):
        sign_in(stagegate_server, name, "wrong", "127.0.4.1")
    call_command("axes_reset_ip", "127.0.4.1")
    session, response = sign_in(stagegate_server, "mallory", "mallory-pw", "127.0.4.1")
    assert response.status_code == 302
    assert AuditEvent.objects.filter(verb="auth.unlocked").count() >= 1


def test_bad_tokens_lock_their_address_out_of_the_api_and_the_hub(hub_world, stagegate_server):
    _, _, tokens = hub_world
    attacker = client_at("127.0.5.1")
    for n in range(5):
        response = attacker.get(f"{stagegate_server.url}/api/v1/releases/",
                                headers=bearer(f"sg_guess{n:040d}"))
        assert response.status_code == 401
    # Now even a valid token is refused from that address, on the API and the Hub.
    api = attacker.get(f"{stagegate_server.url}/api/v1/releases/", headers=bearer(tokens["erin"]))
    assert api.status_code == 429 and "locked out" in api.json()["detail"]
    hub = attacker.get(f"{stagegate_server.url}/lab/gated-gpt/resolve/main/model.safetensors",
                       headers=bearer(tokens["erin"]))
    assert hub.status_code == 429 and "locked out" in hub.headers["X-Error-Message"]
    # From another address the token works.
    other = client_at("127.0.5.2").get(f"{stagegate_server.url}/lab/gated-gpt/resolve/main/"
                                       "model.safetensors", headers=bearer(tokens["erin"]))
    assert other.status_code == 200
    failures = AuditEvent.objects.filter(verb="auth.login_failed")
    assert failures.exists() and all(e.data["via"] == "token" for e in failures)
    assert all(e.data["address"] == "127.0.5.1" for e in failures)


def test_bad_tokens_on_the_hub_count_too(hub_world, stagegate_server):
    _, _, tokens = hub_world
    attacker = client_at("127.0.6.1")
    for n in range(5):
        response = attacker.head(f"{stagegate_server.url}/api/models/lab/open-gpt",
                                 headers=bearer(f"sg_guess{n:040d}"))
        assert response.status_code == 401
    locked = attacker.get(f"{stagegate_server.url}/api/v1/releases/", headers=bearer(tokens["erin"]))
    assert locked.status_code == 429
