"""`seed_demo`: every demo login works, every feature is there to meet, and twice is once."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from audit.models import AuditEvent
from models.models import Checkpoint
from releases import access
from releases.management.commands.seed_demo import ADMIN, PERSONAS, password_for
from releases.models import Release
from releases.selectors import review_queue


@pytest.fixture
def demo_cache(settings, model_cache):
    # The demo's tiny models are cached by content hash, like every trained test model.
    settings.DATA_DIR = model_cache.parent / "demo-data"
    settings.DATA_DIR.mkdir(exist_ok=True)


@pytest.mark.django_db
def test_seed_demo_meets_a_newcomer_with_every_feature_and_is_idempotent(client, demo_cache):
    from django.contrib.auth.models import User

    out = StringIO()
    call_command("seed_demo", stdout=out, stderr=StringIO())
    printed = out.getvalue()
    for username, *_ in PERSONAS + [ADMIN]:
        assert username in printed and password_for(username) in printed
        assert client.login(username=username, password=password_for(username)), username
        client.logout()
    users = {u.username: u for u in User.objects.all()}

    labels = set(Checkpoint.objects.filter(family__org="demo").values_list(
        "family__name", "label"))
    assert {("tiny-gpt", "step0"), ("tiny-gpt", "step300"), ("tiny-gpt-gated", "v1"),
            ("tiny-gpt-gated", "v2")} <= labels
    opened = Release.objects.get(checkpoint__family__name="tiny-gpt", current_stage="open")
    assert access.download_access(None, opened).allowed
    gated = Release.objects.get(checkpoint__family__name="tiny-gpt-gated", current_stage="gated")
    assert access.download_access(users["erin"], gated).allowed
    assert not access.download_access(users["mallory"], gated).allowed
    waiting = Release.objects.get(checkpoint__label="v2")
    assert waiting.status == "in_review" and waiting.target_stage == "gated"
    assert waiting in review_queue(users["bob"]) and waiting in review_queue(users["carol"])

    counts = (Checkpoint.objects.count(), Release.objects.count(), AuditEvent.objects.count())
    call_command("seed_demo", "--quiet", stdout=StringIO(), stderr=StringIO())
    assert (Checkpoint.objects.count(), Release.objects.count(),
            AuditEvent.objects.count()) == counts
