"""Releases taken up the ladder through the real services, for the hub and access tests."""

from __future__ import annotations

from datetime import timedelta

from releases import access, clock, workflow
from releases.models import Release
from releases.selectors import stage_rule
from tests.releases.conftest import ASSESSMENT, run_pending_evals, submit_checkpoint

ORDER = ("internal", "partners", "gated", "open")


def release_at(personas, stage: str, *, family: str, label: str = "v1", seed: int = 0,
               folder=None, checkpoint=None) -> Release:
    """A checkpoint of `family` (or `checkpoint`) published up to `stage` under the current
    (test) policy."""
    if checkpoint is not None:
        pass
    elif folder is not None:
        from tests.eval_runs.conftest import submit_folder

        checkpoint = submit_folder(personas.alice, folder, family=family, label=label)
    else:
        checkpoint = submit_checkpoint(personas.alice, label=label, seed=seed, family=family)
    release = workflow.create_release(actor=personas.alice, checkpoint=checkpoint,
                                      assessment=ASSESSMENT)
    workflow.submit_release(actor=personas.alice, release=release)
    run_pending_evals(release)
    for step in ORDER[: ORDER.index(stage) + 1]:
        release = Release.objects.get(pk=release.pk)
        if step != "internal":
            workflow.request_next_stage(actor=personas.alice, release=release)
            run_pending_evals(release)
            release = Release.objects.get(pk=release.pk)
            for reviewer in (personas.bob, personas.carol):
                if release.status == "in_review" and workflow.can_review(reviewer, release):
                    workflow.approve_release(actor=reviewer, release=release, stage=step)
                    release = Release.objects.get(pk=release.pk)
        assert release.status == "approved", (step, release.status)
        dwell = stage_rule(release, step).min_dwell_days
        if dwell:  # the policy's time in the previous stage: move the clock on
            clock.advance(timedelta(days=dwell))
        workflow.publish_release(actor=personas.dave, release=release, stage=step)
    return Release.objects.get(pk=release.pk)


def grant(personas, release: Release, user) -> None:
    if release.current_stage == "partners":
        access.grant_partner_access(actor=personas.dave, release=release, user=user,
                                    agreement_note="agreement #42")
    else:
        from releases.selectors import stage_rule

        licence = stage_rule(release, "gated").terms.licence_version
        request = access.request_access(actor=user, release=release,
                                        answers={"affiliation": "Uni", "accept": True},
                                        licence_version=licence, accept=True)
        access.decide_access_request(actor=personas.dave, request=request, approve=True)
