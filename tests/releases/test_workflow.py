"""The release workflow through its services: guards, quorums, dwell, idempotency, audit."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied

from audit.models import AuditEvent
from releases import clock, workflow
from releases.errors import ReleaseInputError, TransitionNotAllowed
from releases.models import Release
from releases.policies_service import load_policy_version
from releases.selectors import release_gates
from tests.releases.conftest import ASSESSMENT, POLICIES, run_pending_evals, submit_checkpoint


def count_events() -> int:
    return AuditEvent.objects.count()


def at_partners_review(personas, release) -> Release:
    """internal needs no approval in the test policy: publish it, then ask for partners."""
    release = Release.objects.get(pk=release.pk)
    assert release.status == "approved" and release.target_stage == "internal"
    release = workflow.publish_release(actor=personas.dave, release=release, stage="internal")
    release = workflow.request_next_stage(actor=personas.alice, release=release)
    run_pending_evals(release)
    return Release.objects.get(pk=release.pk)


@pytest.mark.django_db
def test_a_release_needs_a_complete_assessment(personas, simple_policy):
    checkpoint = submit_checkpoint(personas.alice)
    release = workflow.create_release(actor=personas.alice, checkpoint=checkpoint,
                                      assessment={"intended_use": "research"})
    with pytest.raises(TransitionNotAllowed, match="fill in the risk assessment first: "
                                                   "training data, known hazards, mitigations"):
        workflow.submit_release(actor=personas.alice, release=release)


@pytest.mark.django_db
def test_submission_waits_for_required_evals_then_is_reviewed(personas, simple_policy):
    checkpoint = submit_checkpoint(personas.alice)
    release = workflow.create_release(actor=personas.alice, checkpoint=checkpoint,
                                      assessment=ASSESSMENT)
    release = workflow.submit_release(actor=personas.alice, release=release)
    assert release.status == "evaluating" and release.target_stage == "internal"
    run_pending_evals(release)
    # internal needs no approvals here, so passing its gates approves it.
    assert release.status == "approved"


@pytest.mark.django_db
def test_submitter_cannot_approve_own_release(personas, in_review):
    release = at_partners_review(personas, in_review)
    personas.alice.groups.add(*personas.bob.groups.all())  # alice is also a safety reviewer now
    before = count_events()
    with pytest.raises(PermissionDenied, match="someone else must review it"):
        workflow.approve_release(actor=personas.alice, release=release, stage="partners")
    assert AuditEvent.objects.filter(verb="permission.denied").count() >= 1
    assert Release.objects.get(pk=release.pk).status == "in_review"
    assert count_events() == before + 1  # only the refusal


@pytest.mark.django_db
def test_the_same_reviewer_approving_twice_counts_once(personas, in_review):
    release = at_partners_review(personas, in_review)
    # Make partners need two safety approvals: bob twice must not be enough.
    text = (POLICIES / "simple.yaml").read_text().replace(
        "  partners:\n    audience: named partners\n    tiers:\n      low:\n        required_evals:\n"
        "          - {eval: integrity, metric: passed, min: 1}\n        approvals:\n"
        "          - {role: safety, count: 1}",
        "  partners:\n    audience: named partners\n    tiers:\n      low:\n        required_evals:\n"
        "          - {eval: integrity, metric: passed, min: 1}\n        approvals:\n"
        "          - {role: safety, count: 2}")
    load_policy_version(actor=None, text=text, source="two-safety.yaml")
    release = workflow.withdraw_release(actor=personas.dave, release=release, reason="re-run")
    checkpoint = submit_checkpoint(personas.alice, label="v2", seed=2)
    release = workflow.create_release(actor=personas.alice, checkpoint=checkpoint,
                                      assessment=ASSESSMENT)
    workflow.submit_release(actor=personas.alice, release=release)
    run_pending_evals(release)
    release = at_partners_review(personas, release)
    workflow.approve_release(actor=personas.bob, release=release, stage="partners")
    before = count_events()
    workflow.approve_release(actor=personas.bob, release=release, stage="partners")
    assert count_events() == before  # the second approval is a no-op
    release.refresh_from_db()
    assert release.status == "in_review"
    gate = next(g for g in release_gates(release) if g.name == "approvals:safety")
    assert not gate.passed and "needs 1 more approval from role safety" in gate.reason


@pytest.mark.django_db
def test_one_approval_from_the_right_role_approves_and_dave_publishes(personas, in_review):
    release = at_partners_review(personas, in_review)
    with pytest.raises(PermissionDenied, match="needs the role safety"):
        workflow.approve_release(actor=personas.carol, release=release, stage="partners")
    release = workflow.approve_release(actor=personas.bob, release=release, stage="partners")
    assert release.status == "approved"
    with pytest.raises(PermissionDenied, match="release_managers"):
        workflow.publish_release(actor=personas.bob, release=release, stage="partners")
    release = workflow.publish_release(actor=personas.dave, release=release, stage="partners")
    assert (release.status, release.current_stage) == ("published", "partners")


@pytest.mark.django_db
def test_approving_the_wrong_stage_is_refused_in_words(personas, in_review):
    release = at_partners_review(personas, in_review)
    with pytest.raises(TransitionNotAllowed, match="under review for partners, not gated"):
        workflow.approve_release(actor=personas.bob, release=release, stage="gated")


@pytest.mark.django_db
def test_a_release_above_the_ceiling_is_never_approved_for_an_external_stage(personas, db):
    text = (POLICIES / "simple.yaml").read_text().replace("max_parameters: 1e15",
                                                          "max_parameters: 100")
    load_policy_version(actor=None, text=text, source="tiny-ceiling.yaml")
    checkpoint = submit_checkpoint(personas.alice)
    release = workflow.create_release(actor=personas.alice, checkpoint=checkpoint,
                                      assessment=ASSESSMENT)
    workflow.submit_release(actor=personas.alice, release=release)
    run_pending_evals(release)
    release = at_partners_review(personas, release)  # internal is not external: allowed
    for reviewer in (personas.bob, personas.carol):
        with pytest.raises((TransitionNotAllowed, PermissionDenied)):
            workflow.approve_release(actor=reviewer, release=release, stage="partners")
    gate = next(g for g in release_gates(release) if g.name == "ceiling")
    assert not gate.passed and "above the ceiling of 100 parameters" in gate.reason
    assert Release.objects.get(pk=release.pk).status == "in_review"


@pytest.mark.django_db
def test_a_failed_required_eval_blocks_with_its_reason(personas, simple_policy):
    from pathlib import Path

    from models.blobstore import blob_name, blob_storage

    checkpoint = submit_checkpoint(personas.alice)
    blob = Path(blob_storage().path(blob_name(checkpoint.files.get().blob_id)))
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes()[:-1] + b"\x01")  # the stored bytes no longer match
    release = workflow.create_release(actor=personas.alice, checkpoint=checkpoint,
                                      assessment=ASSESSMENT)
    workflow.submit_release(actor=personas.alice, release=release)
    run_pending_evals(release)
    assert release.status == "in_review"  # not approved: the integrity gate is closed
    gate = next(g for g in release_gates(release) if g.name == "eval:integrity:passed")
    assert not gate.passed
    assert gate.reason.startswith("eval integrity has no result (it failed: integrity check "
                                  "failed: model.safetensors: sha256")
    assert gate.reason.endswith("cannot rule out, counts as below threshold")
    assert Release.objects.get(pk=release.pk).failed_evals[0]["eval"] == "integrity"


@pytest.mark.django_db
def test_a_published_release_never_changes_its_bytes_new_bytes_are_a_new_release(personas,
                                                                                  in_review):
    release = at_partners_review(personas, in_review)
    published = release.checkpoint
    workflow.approve_release(actor=personas.bob, release=release, stage="partners")
    release = workflow.publish_release(actor=personas.dave, release=release, stage="partners")
    release = workflow.request_next_stage(actor=personas.alice, release=release)
    run_pending_evals(release)
    workflow.request_changes(actor=personas.carol, release=release, stage="gated",
                             comment="please retrain without the scraped forum")
    new = submit_checkpoint(personas.alice, label="v2", seed=7)
    with pytest.raises(TransitionNotAllowed, match="has published partners, so its bytes can "
                                                   "never change; open a new release"):
        workflow.update_release(actor=personas.alice, release=release, checkpoint=new)
    release = Release.objects.get(pk=release.pk)
    assert release.checkpoint == release.published_checkpoint == published
    assert list(release.publications.values_list("checkpoint", flat=True)) == [
        published.pk, published.pk]
    successor = workflow.create_release(actor=personas.alice, checkpoint=new,
                                        assessment=ASSESSMENT, supersedes=release)
    assert successor.supersedes == release and successor.published_checkpoint is None
    assert successor.manifest_digest == new.manifest_digest


@pytest.mark.django_db
def test_a_new_checkpoint_voids_earlier_approvals(personas, simple_policy):
    """Before anything is published, a draft may take other bytes: approvals given for the
    first bytes do not count for the second."""
    text = (POLICIES / "simple.yaml").read_text().replace(
        "  internal:\n    audience: owners and reviewers\n    tiers:\n      low:\n        required_evals:\n"
        "          - {eval: integrity, metric: passed, min: 1}\n",
        "  internal:\n    audience: owners and reviewers\n    tiers:\n      low:\n        required_evals:\n"
        "          - {eval: integrity, metric: passed, min: 1}\n        approvals:\n"
        "          - {role: safety, count: 1}\n          - {role: policy, count: 1}\n")
    assert text != (POLICIES / "simple.yaml").read_text()
    load_policy_version(actor=None, text=text, source="internal-review.yaml")
    checkpoint = submit_checkpoint(personas.alice)
    release = workflow.create_release(actor=personas.alice, checkpoint=checkpoint,
                                      assessment=ASSESSMENT)
    workflow.submit_release(actor=personas.alice, release=release)
    run_pending_evals(release)
    workflow.approve_release(actor=personas.bob, release=release, stage="internal")
    workflow.request_changes(actor=personas.carol, release=release, stage="internal",
                             comment="use the deduplicated run")
    new = submit_checkpoint(personas.alice, label="v2", seed=7)
    release = workflow.update_release(actor=personas.alice, release=release, checkpoint=new)
    workflow.submit_release(actor=personas.alice, release=release)
    run_pending_evals(release)
    gate = next(g for g in release_gates(release) if g.name == "approvals:safety")
    assert not gate.passed, "bob approved other bytes; that approval must not count"


@pytest.mark.django_db
def test_dwell_time_is_enforced_with_the_clock(personas, in_review):
    release = at_partners_review(personas, in_review)
    workflow.approve_release(actor=personas.bob, release=release, stage="partners")
    release = workflow.publish_release(actor=personas.dave, release=release, stage="partners")
    release = workflow.request_next_stage(actor=personas.alice, release=release)
    run_pending_evals(release)
    workflow.approve_release(actor=personas.bob, release=release, stage="gated")
    release = workflow.approve_release(actor=personas.carol, release=release, stage="gated")
    assert release.status == "approved"
    with pytest.raises(TransitionNotAllowed, match="dwell time: 7 days left in partners"):
        workflow.publish_release(actor=personas.dave, release=release, stage="gated")
    clock.advance(timedelta(days=6, hours=1))
    with pytest.raises(TransitionNotAllowed, match="dwell time"):
        workflow.publish_release(actor=personas.dave, release=release, stage="gated")
    clock.advance(timedelta(hours=23))
    release = workflow.publish_release(actor=personas.dave, release=release, stage="gated")
    assert release.current_stage == "gated"


@pytest.mark.django_db
def test_every_action_runs_twice_safely_and_writes_one_event(personas, simple_policy):
    checkpoint = submit_checkpoint(personas.alice)
    steps = [
        lambda r: workflow.create_release(actor=personas.alice, checkpoint=checkpoint,
                                          assessment=ASSESSMENT),
    ]
    release = steps[0](None)
    actions = [
        ("release.submitted", lambda r: workflow.submit_release(actor=personas.alice, release=r)),
    ]
    for verb, action in actions:
        action(release)
        action(release)
        assert AuditEvent.objects.filter(verb=verb).count() == 1
    run_pending_evals(release)
    release.refresh_from_db()
    twice = [
        ("release.published", lambda r: workflow.publish_release(actor=personas.dave, release=r,
                                                                  stage="internal")),
        ("release.next_stage_requested",
         lambda r: workflow.request_next_stage(actor=personas.alice, release=r)),
    ]
    for verb, action in twice:
        before = count_events()
        action(release)
        after_first = count_events()
        action(release)
        assert count_events() == after_first
        assert AuditEvent.objects.filter(verb=verb).count() == 1
        assert after_first - before >= 1
        release.refresh_from_db()
    run_pending_evals(release)
    for verb, action in [
        ("release.review.approve", lambda r: workflow.approve_release(
            actor=personas.bob, release=r, stage="partners")),
        ("release.published", lambda r: workflow.publish_release(
            actor=personas.dave, release=r, stage="partners")),
        ("release.withdrawn", lambda r: workflow.withdraw_release(
            actor=personas.dave, release=r, reason="found a problem")),
    ]:
        before = AuditEvent.objects.filter(verb=verb).count()
        action(release)
        action(release)
        assert AuditEvent.objects.filter(verb=verb).count() == before + 1
        release.refresh_from_db()
    assert release.status == "withdrawn"


@pytest.mark.django_db
def test_reject_and_request_changes_need_a_comment(personas, in_review):
    release = at_partners_review(personas, in_review)
    with pytest.raises(ReleaseInputError, match="say why"):
        workflow.reject_release(actor=personas.bob, release=release, stage="partners", comment=" ")
    release = workflow.reject_release(actor=personas.bob, release=release, stage="partners",
                                      comment="memorises the eval set")
    assert release.status == "rejected"
    with pytest.raises(TransitionNotAllowed):
        workflow.approve_release(actor=personas.bob, release=release, stage="partners")


@pytest.mark.django_db
def test_only_owners_open_releases_and_only_ready_checkpoints(personas, simple_policy):
    checkpoint = submit_checkpoint(personas.alice)
    with pytest.raises(PermissionDenied):
        workflow.create_release(actor=personas.mallory, checkpoint=checkpoint, assessment=ASSESSMENT)
    assert not Release.objects.exists()
    from models.models import Checkpoint
    Checkpoint.objects.filter(pk=checkpoint.pk).update(status="quarantined")
    checkpoint.refresh_from_db()
    with pytest.raises(TransitionNotAllowed, match="only a ready checkpoint"):
        workflow.create_release(actor=personas.alice, checkpoint=checkpoint, assessment=ASSESSMENT)


@pytest.mark.django_db
def test_withdrawal_counts_the_grants_and_requests_it_revokes_in_its_one_event(personas,
                                                                                simple_policy):
    from releases.models import AccessGrant
    from tests.releases.stages import grant, release_at

    release = release_at(personas, "gated", family="lab/counted")
    grant(personas, release, personas.erin)
    workflow.withdraw_release(actor=personas.dave, release=release, reason="leaks a dataset")
    event = AuditEvent.objects.get(verb="release.withdrawn", object_id=str(release.pk))
    assert event.data["grants_revoked"] == 1 and event.data["requests_cancelled"] == 0
    assert not AccessGrant.objects.filter(release=release, revoked_at__isnull=True).exists()


@pytest.mark.django_db
def test_only_someone_who_can_see_a_release_may_comment_on_it(personas, in_review):

    with pytest.raises(PermissionDenied):
        workflow.comment_on_release(actor=personas.mallory, release=in_review, comment="hi")
    assert AuditEvent.objects.filter(verb="permission.denied", actor=personas.mallory).exists()
    workflow.comment_on_release(actor=personas.bob, release=in_review, comment="looked at it")
