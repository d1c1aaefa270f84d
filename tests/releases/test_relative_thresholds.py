"""Thresholds relative to what is already open: a release is compared with a checkpoint the lab
marked as already public, on the same eval under the same policy's evidence; the gate says
both numbers, and a reference without a result (or not marked) fails."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.models import AuditEvent
from evaluations import runner, services
from evaluations.models import EvalRun
from evaluations.tinylm import TinyGPTSpec, cached_tiny_gpt
from releases import workflow
from releases.models import PublicReference, Release
from releases.policies_service import load_policy_version
from releases.references import mark_public_reference, unmark_public_reference
from releases.standing import release_standing
from tests.conftest import TINY_TEXTS
from tests.eval_runs.conftest import submit_folder
from tests.evaluations.corpora import pack_bytes
from tests.releases.conftest import ASSESSMENT

pytestmark = pytest.mark.django_db(transaction=True)

GATE = "eval:lab_texts:bits_per_byte:vs:{}"


def policy_text(reference: str, version: str) -> str:
    """One tier, one stage: integrity, and held-out bits per byte no more than 0.05 below
    (better than) the reference's: nothing more capable than what is already open."""
    return f"""name: relative-test
version: "{version}"
ceilings:
  max_parameters: 1e15
tiers:
  - name: low
stages:
  internal:
    audience: owners
    tiers:
      low:
        required_evals:
          - {{eval: integrity, metric: passed, min: 1}}
          - {{eval: lab_texts, metric: bits_per_byte, min_below_reference: 0.05, reference: "{reference}"}}
"""


def run_queued() -> None:
    for run in EvalRun.objects.filter(status="queued"):
        runner.execute_run(run_id=run.pk, worker="test")


@pytest.fixture
def models(model_cache, tiny_model_dir):
    """A weak open model (never trained), a strong one (trained five times longer than the
    candidate), and the candidate: same texts, same tokenizer."""
    return {"weak": cached_tiny_gpt(model_cache, TINY_TEXTS, TinyGPTSpec(steps=0, seed=1)),
            "strong": cached_tiny_gpt(model_cache, TINY_TEXTS, TinyGPTSpec(steps=200, seed=1)),
            "candidate": tiny_model_dir}


@pytest.fixture
def setup(personas, models):
    pack = pack_bytes({"name": "lab_texts", "version": 1, "type": "scored_text",
                       "description": "the lab's held-out texts", "licence": "CC0-1.0"},
                      [{"id": f"t{i}", "text": f"the model number {i} reads the text and "
                                               "writes it down again"} for i in range(40, 52)])
    services.add_eval_pack(actor=personas.alice, data=pack)
    checkpoints = {name: submit_folder(personas.alice, folder,
                                       family="lab/new" if name == "candidate" else "lab/open",
                                       label=name) for name, folder in models.items()}
    return checkpoints


def release_of(personas, checkpoint) -> Release:
    release = workflow.create_release(actor=personas.alice, checkpoint=checkpoint,
                                      assessment=ASSESSMENT)
    workflow.submit_release(actor=personas.alice, release=release)
    run_queued()
    workflow.refresh_release(release_id=release.pk)
    return Release.objects.get(pk=release.pk)


def gate(detail: dict, reference: str) -> dict:
    [found] = [g for g in detail["gates"] if g["name"] == GATE.format(reference)]
    return found


def bpb(checkpoint) -> float:
    runs = list(EvalRun.objects.filter(manifest_digest=checkpoint.manifest_digest,
                                       eval_name="lab_texts").values("status", "error"))
    assert [r["status"] for r in runs] == ["succeeded"], (checkpoint, list(
        EvalRun.objects.values_list("checkpoint__label", "eval_name", "status", "error")))
    return EvalRun.objects.get(manifest_digest=checkpoint.manifest_digest, eval_name="lab_texts",
                               status="succeeded").metrics["bits_per_byte"]


def test_a_relative_threshold_blocks_and_passes_as_the_reference_moves(personas, setup,
                                                                       api_client_for):
    load_policy_version(actor=None, text=policy_text("lab/open@weak", "1"), source="r1.yaml")
    # Not yet marked as already public: no reference, so the gate is closed and says why.
    release = release_of(personas, setup["candidate"])
    bob = api_client_for(personas.bob)
    closed = gate(bob.get(f"/api/v1/releases/{release.pk}/").json(), "lab/open@weak")
    assert closed["passed"] is False
    assert "lab/open@weak is not marked as already public" in closed["reason"]

    # Marking it requests its evidence run (the policy's pinned pack) on the workers.
    mark_public_reference(actor=personas.dave, checkpoint=setup["weak"], note="on the Hub")
    assert EvalRun.objects.filter(manifest_digest=setup["weak"].manifest_digest,
                                  eval_name="lab_texts", status="queued").exists()
    run_queued()
    weak, mine = bpb(setup["weak"]), bpb(setup["candidate"])
    assert mine < weak - 0.05, (mine, weak)

    # Far more capable than the weak open model: blocked, and the gate says both numbers.
    closed = gate(bob.get(f"/api/v1/releases/{release.pk}/").json(), "lab/open@weak")
    assert closed["passed"] is False
    assert closed["reason"].startswith("eval lab_texts failed:")
    assert f"{mine:.2f} against {weak:.2f} for the reference lab/open@weak" in closed["reason"]
    assert f"so at least {weak - 0.05:.2f}" in closed["reason"]
    assert "for the reference lab/open@weak" in closed["reason"]
    assert Release.objects.get(pk=release.pk).status == "in_review"  # never approved
    with pytest.raises(workflow.TransitionNotAllowed, match="cannot be published"):
        workflow.publish_release(actor=personas.dave, release=release, stage="internal")

    # The lab's policy moves the reference to the strongest open model: the same bytes pass.
    workflow.withdraw_release(actor=personas.alice, release=release, reason="new policy")
    load_policy_version(actor=None, text=policy_text("lab/open@strong", "2"), source="r2.yaml")
    mark_public_reference(actor=personas.dave, checkpoint=setup["strong"], note="on the Hub")
    run_queued()
    assert bpb(setup["strong"]) < mine - 0.05
    release = release_of(personas, setup["candidate"])
    opened = gate(bob.get(f"/api/v1/releases/{release.pk}/").json(), "lab/open@strong")
    assert opened["passed"] is True, opened["reason"]
    assert opened["reason"].startswith("eval lab_texts passed:")
    workflow.publish_release(actor=personas.dave, release=Release.objects.get(pk=release.pk),
                             stage="internal")

    # The reference no longer counts as public: the threshold fails for the next decision.
    unmark_public_reference(actor=personas.dave, checkpoint=setup["strong"], reason="pulled")
    standing = release_standing(Release.objects.get(pk=release.pk))
    [relative] = [g for g in standing.gates_for("internal")
                  if g.name == GATE.format("lab/open@strong")]
    assert not relative.passed and "not marked as already public" in relative.reason
    verbs = list(AuditEvent.objects.filter(verb__startswith="reference.")
                 .values_list("verb", flat=True))
    assert verbs.count("reference.marked") == 2 and verbs.count("reference.unmarked") == 1


def test_a_reference_without_a_result_under_the_policys_evidence_counts_as_failing(
        personas, setup):
    load_policy_version(actor=None, text=policy_text("lab/open@weak", "3"), source="r3.yaml")
    mark_public_reference(actor=personas.dave, checkpoint=setup["weak"], note="on the Hub")
    # Its evidence run exists but is still queued: no number to compare with.
    release = release_of(personas, setup["candidate"])
    EvalRun.objects.filter(manifest_digest=setup["weak"].manifest_digest).update(
        status="queued")
    [relative] = [g for g in release_standing(release).gates
                  if g.name == GATE.format("lab/open@weak")]
    assert not relative.passed
    assert "the reference lab/open@weak has no bits_per_byte result" in relative.reason
    assert "it is queued" in relative.reason and "counts as failing" in relative.reason


def test_only_a_release_manager_marks_a_checkpoint_as_already_public(personas, setup):
    from django.core.exceptions import PermissionDenied

    for outsider in (personas.alice, personas.bob, personas.mallory):
        with pytest.raises(PermissionDenied, match="release_managers"):
            mark_public_reference(actor=outsider, checkpoint=setup["weak"], note="trust me")
    assert not PublicReference.objects.exists()
    assert AuditEvent.objects.filter(verb="permission.denied").count() == 3
    first = mark_public_reference(actor=personas.dave, checkpoint=setup["weak"], note="Hub")
    again = mark_public_reference(actor=personas.dave, checkpoint=setup["weak"], note="Hub")
    assert first.pk == again.pk
    assert AuditEvent.objects.filter(verb="reference.marked").count() == 1


def test_the_command_marks_and_unmarks_and_refuses_an_unknown_checkpoint(personas, setup,
                                                                         capsys):
    call_command("mark_public_reference", "lab/open@weak", "--note", "on the Hub since May")
    assert PublicReference.objects.get().checkpoint == setup["weak"]
    call_command("mark_public_reference", "lab/open@weak", "--unmark", "--reason", "pulled")
    assert not PublicReference.objects.exists()
    with pytest.raises(CommandError, match="no checkpoint lab/open@nope"):
        call_command("mark_public_reference", "lab/open@nope", "--note", "x")
    with pytest.raises(CommandError, match="not a checkpoint reference"):
        call_command("mark_public_reference", "lab-open", "--note", "x")
    with pytest.raises(CommandError, match="say where the checkpoint is already public"):
        call_command("mark_public_reference", "lab/open@weak")
