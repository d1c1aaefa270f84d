"""Configuring publication targets: the command, the family page, the admin; tokens at rest;
who may configure, link Hub accounts and ask for a sync (and every refusal, audited)."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from audit.models import AuditEvent
from publishing import services, tokens
from publishing.models import HubAccount, PublicationTarget
from tests.live import ROOT
from tests.publishing.conftest import FAMILY, REMOTE
from tests.releases.conftest import submit_checkpoint
from tests.releases.stages import release_at

pytestmark = pytest.mark.django_db
HUB = "https://hub.example"


@pytest.fixture
def family(personas, settings):
    settings.STAGEGATE_PUBLICATION_ENDPOINTS = [HUB, "https://huggingface.co"]
    return submit_checkpoint(personas.alice).family


def add(*args, stdin: str = ""):
    out = io.StringIO()
    old = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        call_command("add_publication_target", *args, stdout=out)
    finally:
        sys.stdin = old
    return out.getvalue()


def test_the_command_adds_a_target_with_the_token_from_the_environment(family):
    line = add(FAMILY, "--endpoint", HUB + "/", "--repo", REMOTE, "--token-env", "STAGEGATE_HUB_TOKEN")
    target = PublicationTarget.objects.get()
    assert (target.endpoint, target.remote_repo, target.token_env) == (HUB, REMOTE,
                                                                       "STAGEGATE_HUB_TOKEN")
    assert target.token_encrypted == ""
    assert "environment variable STAGEGATE_HUB_TOKEN" in line and REMOTE in line
    assert AuditEvent.objects.filter(verb="publication.target_added").count() == 1
    again = add(FAMILY, "--endpoint", HUB, "--repo", REMOTE, "--token-env", "HF_TOKEN")
    assert PublicationTarget.objects.get().token_env == "HF_TOKEN" and "HF_TOKEN" in again


def test_a_stored_token_is_encrypted_never_in_clear(family):
    add(FAMILY, "--endpoint", HUB, "--repo", REMOTE, "--token-stdin", stdin="hf_secret_123\n")
    target = PublicationTarget.objects.get()
    assert "hf_secret_123" not in target.token_encrypted
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM publishing_publicationtarget")
        assert "hf_secret_123" not in repr(cursor.fetchall())
    assert not AuditEvent.objects.filter(data_json__contains="hf_secret_123").exists()
    assert tokens.target_token(target) == "hf_secret_123"


def test_a_token_survives_a_secret_key_rotation_only_through_the_fallbacks(family, settings):
    add(FAMILY, "--endpoint", HUB, "--repo", REMOTE, "--token-stdin", stdin="hf_abc\n")
    target = PublicationTarget.objects.get()
    old = settings.SECRET_KEY
    settings.SECRET_KEY = "a-new-secret-key"
    with pytest.raises(tokens.TokenUnavailable, match="another SECRET_KEY"):
        tokens.target_token(target)
    settings.SECRET_KEY_FALLBACKS = [old]
    assert tokens.target_token(target) == "hf_abc"


@pytest.mark.parametrize("args, message", [
    (["--endpoint", HUB, "--repo", REMOTE, "--token-env", "SECRET_KEY"], "ending in _TOKEN"),
    (["--endpoint", HUB, "--repo", REMOTE, "--token-env", "DATABASE_URL"], "ending in _TOKEN"),
    (["--endpoint", "https://evil.example", "--repo", REMOTE, "--token-env", "HF_TOKEN"],
     "not a Hub this Stagegate publishes to"),
    (["--endpoint", "ftp://hub.example", "--repo", REMOTE, "--token-env", "HF_TOKEN"],
     "base URL"),
    (["--endpoint", HUB, "--repo", "no-slash", "--token-env", "HF_TOKEN"], "ORG/NAME"),
    (["--endpoint", HUB, "--repo", REMOTE, "--token-stdin"], "held no token"),
])
def test_the_command_refuses_what_cannot_work_with_one_line(family, args, message):
    with pytest.raises(CommandError, match=message):
        add(FAMILY, *args)
    assert not PublicationTarget.objects.exists()


def test_the_command_as_a_process_exits_non_zero_with_one_line(family):
    from tests.live import worker_env

    proc = subprocess.run([sys.executable, "manage.py", "add_publication_target", "nope/none",
                           "--endpoint", HUB, "--repo", REMOTE, "--token-env", "HF_TOKEN"],
                          cwd=ROOT, env=worker_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1] == \
        "CommandError: no family 'nope/none' (give ORG/NAME as on its page)"


def test_one_remote_repo_mirrors_one_family(family, personas):
    other = submit_checkpoint(personas.alice, family="lab/other").family
    services.add_publication_target(actor=personas.dave, family=family, endpoint=HUB,
                                    remote_repo=REMOTE, token_env="HF_TOKEN")
    with pytest.raises(services.PublicationInputError, match="one remote repo mirrors one family"):
        services.add_publication_target(actor=personas.dave, family=other, endpoint=HUB,
                                        remote_repo=REMOTE.upper(), token_env="HF_TOKEN")


@pytest.mark.parametrize("person", ["alice", "bob", "erin", "mallory"])
def test_only_release_managers_configure_targets_and_hub_accounts(family, personas, person):
    actor = personas[person]
    with pytest.raises(Exception) as refused:
        services.add_publication_target(actor=actor, family=family, endpoint=HUB,
                                        remote_repo=REMOTE, token_env="HF_TOKEN")
    assert "release_managers" in str(refused.value)
    with pytest.raises(Exception):
        # Nobody names their own Hub account: they could name someone else's.
        services.link_hub_account(actor=actor, user=actor, endpoint=HUB, username="someone")
    assert not PublicationTarget.objects.exists() and not HubAccount.objects.exists()
    assert AuditEvent.objects.filter(verb="permission.denied", actor_username=person).count() == 2


def test_a_hub_account_name_belongs_to_one_person(family, personas):
    services.link_hub_account(actor=personas.dave, user=personas.erin, endpoint=HUB,
                              username="erin-hf")
    with pytest.raises(services.PublicationInputError, match="already erin's"):
        services.link_hub_account(actor=personas.dave, user=personas.mallory, endpoint=HUB,
                                  username="ERIN-hf")


def test_the_family_page_lists_targets_and_adds_one_for_dave_only(family, personas, client):
    client.force_login(personas.dave)
    page = client.get(f"/families/{FAMILY}/targets/")
    assert page.status_code == 200 and b'id="add-target"' in page.content
    added = client.post(f"/families/{FAMILY}/targets/", {
        "endpoint": HUB, "remote_repo": REMOTE, "token": "hf_from_the_form"})
    assert added.status_code == 302
    listing = client.get(f"/families/{FAMILY}/targets/")
    assert f"{HUB}/{REMOTE}".encode() in listing.content and b"stored encrypted" in listing.content
    assert b"hf_from_the_form" not in listing.content
    bad = client.post(f"/families/{FAMILY}/targets/", {"endpoint": "https://evil.example",
                                                        "remote_repo": "x/y", "token_env": "HF_TOKEN"})
    assert bad.status_code == 400 and b"STAGEGATE_PUBLICATION_ENDPOINTS" in bad.content
    client.force_login(personas.alice)  # an owner of the family, not a release manager
    page = client.get(f"/families/{FAMILY}/targets/")
    assert page.status_code == 200 and b'id="add-target"' not in page.content
    refused = client.post(f"/families/{FAMILY}/targets/", {
        "endpoint": HUB, "remote_repo": "acme-hf/alices", "token_env": "HF_TOKEN"})
    assert refused.status_code == 403
    assert PublicationTarget.objects.count() == 1
    client.force_login(personas.mallory)
    assert client.get(f"/families/{FAMILY}/targets/").status_code == 404
    client.force_login(personas.alice)
    assert b'id="targets-link"' in client.get(family.get_absolute_url()).content


def test_the_admin_stores_a_new_token_encrypted(family, personas, client):
    from django.contrib.auth.models import User

    admin = User.objects.create_superuser("root", "root@example.org", "root-pw")
    client.force_login(admin)
    response = client.post("/admin/publishing/publicationtarget/add/", {
        "family": family.pk, "endpoint": HUB, "remote_repo": REMOTE, "token_env": "",
        "token": "hf_admin_token", "active": "on"})
    assert response.status_code == 302, response.content[:2000]
    target = PublicationTarget.objects.get()
    assert tokens.target_token(target) == "hf_admin_token"
    change = client.get(f"/admin/publishing/publicationtarget/{target.pk}/change/")
    assert b"hf_admin_token" not in change.content and target.token_encrypted.encode() not in change.content


def test_the_release_page_shows_targets_and_sync_now_to_those_who_may_sync(
        family, personas, simple_policy, client):
    release = release_at(personas, "partners", family=FAMILY,
                         checkpoint=family.checkpoints.get())
    target = services.add_publication_target(actor=personas.dave, family=family, endpoint=HUB,
                                             remote_repo=REMOTE, token_env="HF_TOKEN")
    client.force_login(personas.dave)
    page = client.get(release.get_absolute_url()).content
    assert b"Publication targets" in page and f'id="sync-{target.pk}"'.encode() in page
    assert b"not mirrored yet" in page
    client.force_login(personas.bob)  # a reviewer sees the release, may not sync
    page = client.get(release.get_absolute_url()).content
    assert b"Publication targets" in page and f'id="sync-{target.pk}"'.encode() not in page
    before = AuditEvent.objects.filter(verb="permission.denied", actor_username="bob").count()
    response = client.post(f"/releases/{release.pk}/targets/{target.pk}/sync/")
    assert response.status_code == 302
    assert not AuditEvent.objects.filter(verb="publication.sync_requested").exists()
    assert AuditEvent.objects.filter(verb="permission.denied",
                                     actor_username="bob").count() == before + 1
