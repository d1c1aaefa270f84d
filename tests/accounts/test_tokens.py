"""API tokens: hashed at rest, scoped, revocable, shown once; `create_token` prints only the token."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from accounts.models import ApiToken
from accounts.services import create_token, revoke_token
from audit.models import AuditEvent

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_tokens_are_stored_hashed(alice):
    token, raw = create_token(actor=alice, user=alice, name="laptop", scope="read")
    assert raw.startswith("sg_") and len(raw) > 30
    assert token.token_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert raw not in str(ApiToken.objects.filter(pk=token.pk).values().get())


@pytest.mark.django_db
def test_a_bearer_token_authenticates_api_requests(alice, client):
    _, raw = create_token(actor=alice, user=alice, name="t", scope="read")
    response = client.get("/api/v1/checkpoints/", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 200


@pytest.mark.django_db
def test_a_revoked_token_is_refused(alice, client):
    token, raw = create_token(actor=alice, user=alice, name="t", scope="all")
    revoke_token(actor=alice, token=token)
    revoke_token(actor=alice, token=token)  # runs twice: no second event
    response = client.get("/api/v1/checkpoints/", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 401
    assert AuditEvent.objects.filter(verb="token.revoked").count() == 1


@pytest.mark.django_db
def test_nobody_creates_tokens_for_someone_else(personas):
    from accounts.services import TokenError

    with pytest.raises(TokenError):
        create_token(actor=personas.mallory, user=personas.alice, name="x", scope="all")


@pytest.mark.django_db
def test_token_creation_is_audited(alice):
    token, _ = create_token(actor=alice, user=alice, name="ci", scope="submit")
    event = AuditEvent.objects.get(verb="token.created")
    assert event.actor == alice and event.object_id == str(token.pk)
    assert event.data == {"user": "alice", "scope": "submit", "name": "ci"}


@pytest.mark.django_db
def test_the_profile_page_shows_a_new_token_once(alice, client):
    client.force_login(alice)
    response = client.post("/accounts/tokens/", {"name": "laptop", "scope": "read"}, follow=True)
    page = response.content.decode()
    token = ApiToken.objects.get(user=alice)
    assert 'id="new-token"' in page and token.hint in page
    again = client.get("/accounts/profile/").content.decode()
    assert 'id="new-token"' not in again


@pytest.mark.django_db
def test_tokens_are_revoked_from_the_profile_page(alice, client):
    client.force_login(alice)
    token, _ = create_token(actor=alice, user=alice, name="old", scope="read")
    client.post(f"/accounts/tokens/{token.pk}/revoke/")
    token.refresh_from_db()
    assert token.revoked_at is not None


@pytest.mark.django_db
def test_create_token_command_prints_the_token_alone(alice):
    out = StringIO()
    call_command("create_token", "alice", "--scope", "read", stdout=out)
    raw = out.getvalue().strip()
    assert "\n" not in raw and raw.startswith("sg_")
    assert ApiToken.objects.get(user=alice).token_hash == hashlib.sha256(raw.encode()).hexdigest()


@pytest.mark.django_db(transaction=True)
def test_token_from_command_substitution_works(tmp_path):
    """TOKEN=$(python manage.py create_token erin) — stdout carries the token and nothing else."""
    from tests.conftest import make_persona
    from tests.live import worker_env

    make_persona("erin")
    proc = subprocess.run([sys.executable, "manage.py", "create_token", "erin"], cwd=ROOT,
                          env=worker_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\n") == 1 and proc.stdout.startswith("sg_")
    proc = subprocess.run([sys.executable, "manage.py", "create_token", "nobody"], cwd=ROOT,
                          env=worker_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "no user named 'nobody'" in proc.stderr
