"""Fixtures of the publication tests: the stand-in Hub in its own process, a family with a
target on it (the lab's bot token, stored encrypted), the people's Hub account names, and a
worker that may reach the stand-in."""

from __future__ import annotations

import os
import time
from datetime import timedelta

import pytest

from publishing import services
from publishing.models import Mirror, PublicationTarget
from releases import clock, workflow
from releases.models import Release
from releases.selectors import stage_rule
from tests.hubstandin.process import ORG, USERS, HubStandin, standin_config
from tests.live import ROOT
from tests.releases.stages import ORDER

FAMILY = "lab/tiny"
REMOTE = f"{ORG}/tiny"
FINAL = {Mirror.State.IN_SYNC, Mirror.State.FAILED, Mirror.State.ALARM,
         Mirror.State.WITHDRAWN, Mirror.State.NOT_MIRRORED}


def start_standin(workdir, **config) -> HubStandin:
    hub = HubStandin(workdir, standin_config(**config))
    hub.start(env={**os.environ, "PYTHONPATH": str(ROOT)})
    return hub


@pytest.fixture
def hub(tmp_path):
    server = start_standin(tmp_path / "hub")
    yield server
    server.stop()


@pytest.fixture
def allow(settings):
    """Let targets name these Hubs (STAGEGATE_PUBLICATION_ENDPOINTS) in this process."""
    def allow_(*servers):
        settings.STAGEGATE_PUBLICATION_ENDPOINTS = [s.url for s in servers]
    return allow_


def add_target(personas, hub, *, token=USERS["bot"].token, family=FAMILY, repo=REMOTE):
    from models.models import ModelFamily

    org, name = family.split("/")
    return services.add_publication_target(
        actor=personas.dave, family=ModelFamily.objects.get(org=org, name=name),
        endpoint=hub.url, remote_repo=repo, token=token)


def link_accounts(personas, hub) -> None:
    for person in ("erin", "mallory"):
        services.link_hub_account(actor=personas.dave, user=personas[person], endpoint=hub.url,
                                  username=USERS[person].name)


def climb(personas, release: Release, stage: str) -> Release:
    """Take a published release one stage up (evals run here, approvals, dwell, publish)."""
    from tests.releases.conftest import run_pending_evals

    assert ORDER.index(stage) == ORDER.index(release.current_stage) + 1
    workflow.request_next_stage(actor=personas.alice, release=release)
    run_pending_evals(release)
    release = Release.objects.get(pk=release.pk)
    for reviewer in (personas.bob, personas.carol):
        if release.status == "in_review" and workflow.can_review(reviewer, release):
            workflow.approve_release(actor=reviewer, release=release, stage=stage)
            release = Release.objects.get(pk=release.pk)
    assert release.status == "approved", release.status
    dwell = stage_rule(release, stage).min_dwell_days
    if dwell:
        clock.advance(timedelta(days=dwell))
    workflow.publish_release(actor=personas.dave, release=release, stage=stage)
    return Release.objects.get(pk=release.pk)


def run(release: Release, target: PublicationTarget, trigger: str = "test") -> Mirror:
    """One mirror run in this process, as the task runs it."""
    from publishing.runs import run_mirror

    run_mirror(release_id=release.pk, stage=release.current_stage, target_id=target.pk,
               trigger=trigger)
    return Mirror.objects.get(target=target, release=release)


def wait_for_mirror(release: Release, target: PublicationTarget, *, stage: str | None = None,
                    states=FINAL, after=None, timeout: float = 120) -> Mirror:
    """Poll (with a deadline) until the worker has left the mirror in one of `states`, at
    `stage`, checked after `after`."""
    deadline = time.monotonic() + timeout
    while True:
        mirror = Mirror.objects.filter(target=target, release=release).first()
        if (mirror is not None and mirror.state in states
                and (stage is None or mirror.stage == stage)
                and (after is None or (mirror.checked_at and mirror.checked_at > after))):
            return mirror
        assert time.monotonic() < deadline, f"mirror not done: {mirror and mirror.state} " \
                                            f"{mirror and mirror.detail}"
        time.sleep(0.2)


@pytest.fixture
def publishing_worker(start_worker, hub):
    """A real worker whose settings allow the stand-in, retrying transient errors fast."""
    return start_worker("publishing", extra_env={
        "STAGEGATE_PUBLICATION_ENDPOINTS": hub.url, "HF_HUB_OFFLINE": "0",
        "HF_HUB_DISABLE_TELEMETRY": "1", "STAGEGATE_PUBLICATION_RETRY_SECONDS": "1",
        "STAGEGATE_PUBLICATION_MAX_RETRIES": "2"})
