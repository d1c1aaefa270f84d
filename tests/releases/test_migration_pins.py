"""The data migration pins what is published today: a release whose checkpoint was swapped after
publication (the hole 0004 closes) goes back to the bytes its stage was published with."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("releases", "0003_awaiting_roles")]
AFTER = [("releases", "0006_publication_pins_enforced")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.fixture
def latest_schema_afterwards():
    """Going back to releases 0003 also unapplies what depends on releases (publishing): put
    every app back at its newest migration for the tests that follow."""
    yield
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_published_stages_are_pinned_to_the_bytes_they_were_published_with(
        latest_schema_afterwards):
    from django.utils import timezone

    old = migrate(BEFORE)
    try:
        User = old.get_model("auth", "User")
        Group = old.get_model("auth", "Group")
        Family = old.get_model("registry", "ModelFamily")
        Checkpoint = old.get_model("registry", "Checkpoint")
        PolicyVersion = old.get_model("releases", "PolicyVersion")
        Release = old.get_model("releases", "Release")
        StagePublication = old.get_model("releases", "StagePublication")
        alice = User.objects.create(username="alice-m")
        family = Family.objects.create(org="lab", name="old", owners=Group.objects.create(
            name="lab/old owners"))
        published = Checkpoint.objects.create(family=family, label="v1", manifest_digest="a" * 64,
                                              status="ready")
        swapped_in = Checkpoint.objects.create(family=family, label="v2",
                                               manifest_digest="b" * 64, status="ready")
        policy = PolicyVersion.objects.create(name="p", version="1", content_hash="c" * 64,
                                              text="name: p")
        now = timezone.now()
        swapped = Release.objects.create(checkpoint=swapped_in, manifest_digest="b" * 64,
                                         policy_version=policy, submitted_by=alice,
                                         status="changes_requested", current_stage="gated",
                                         tier="low")
        StagePublication.objects.create(release=swapped, stage="gated", published_by=alice,
                                        published_at=now, manifest_digest="a" * 64)
        honest = Release.objects.create(checkpoint=published, manifest_digest="a" * 64,
                                        policy_version=policy, submitted_by=alice,
                                        status="published", current_stage="partners",
                                        tier="medium")
        StagePublication.objects.create(release=honest, stage="partners", published_by=alice,
                                        published_at=now, manifest_digest="a" * 64)
        draft = Release.objects.create(checkpoint=swapped_in, manifest_digest="b" * 64,
                                       policy_version=policy, submitted_by=alice)
    finally:
        new = migrate(AFTER)
    Release = new.get_model("releases", "Release")
    StagePublication = new.get_model("releases", "StagePublication")
    swapped = Release.objects.get(pk=swapped.pk)
    assert swapped.checkpoint_id == swapped.published_checkpoint_id == published.pk
    assert swapped.manifest_digest == "a" * 64
    honest = Release.objects.get(pk=honest.pk)
    assert honest.checkpoint_id == honest.published_checkpoint_id == published.pk
    assert Release.objects.get(pk=draft.pk).published_checkpoint_id is None
    assert [(p.checkpoint_id, p.tier) for p in StagePublication.objects.order_by("id")] == [
        (published.pk, "low"), (published.pk, "medium")]
