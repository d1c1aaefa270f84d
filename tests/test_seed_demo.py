"""`seed_demo`: every demo login works, the demo family has its checkpoints, and twice is once."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from audit.models import AuditEvent
from models.models import Checkpoint
from releases.management.commands.seed_demo import ADMIN, PERSONAS, password_for


@pytest.fixture
def demo_cache(settings, model_cache):
    # The demo's tiny models are cached by content hash, like every trained test model.
    settings.DATA_DIR = model_cache.parent / "demo-data"
    settings.DATA_DIR.mkdir(exist_ok=True)


@pytest.mark.django_db
def test_seed_demo_prints_logins_that_work_and_is_idempotent(client, demo_cache):
    out = StringIO()
    call_command("seed_demo", stdout=out, stderr=StringIO())
    printed = out.getvalue()
    for username, *_ in PERSONAS + [ADMIN]:
        assert f"{username}" in printed and password_for(username) in printed
        assert client.login(username=username, password=password_for(username)), username
        client.logout()

    checkpoints = Checkpoint.objects.filter(family__org="demo", family__name="tiny-gpt")
    assert sorted(checkpoints.values_list("label", flat=True)) == ["step0", "step300"]
    assert all(c.status == "ready" and c.census["architecture"]["model_type"] == "gpt2"
               for c in checkpoints)

    counts = (Checkpoint.objects.count(), AuditEvent.objects.count())
    call_command("seed_demo", "--quiet", stdout=StringIO(), stderr=StringIO())
    assert (Checkpoint.objects.count(), AuditEvent.objects.count()) == counts
