"""Checkpoints already public, which a policy's relative thresholds compare releases with.

A lab marks a checkpoint it has evaluated (the best open model of similar size, say) as
already public; a threshold `{eval: mc_knowledge, metric: acc_norm, max_above_reference: 0.05,
reference: org/name@label}` then reads that checkpoint's result under the same policy's
evidence (the same parameters and pack versions) beside the release's own. A reference that is
not marked, not in Stagegate, or has no such result fails the threshold: cannot rule out.
"""

from __future__ import annotations

import logging

from django.db import transaction

from accounts.roles import RELEASE_MANAGERS, has_role
from audit.services import deny, record_event, records_refusals
from evaluations.selectors import evidence
from models.models import Checkpoint
from releases.errors import ReleaseInputError
from releases.models import PublicReference
from releases.policy.model import ReferenceResults

log = logging.getLogger(__name__)


def parse_reference(reference: str) -> tuple[str, str]:
    """("org/name", "label") from "org/name@label"."""
    family, at, label = reference.rpartition("@")
    if not at or "/" not in family or not label:
        raise ReleaseInputError(f"{reference!r} is not a checkpoint reference; write "
                                "org/name@label, e.g. open/base-1b@v1")
    return family, label


def find_checkpoint(reference: str) -> Checkpoint | None:
    family, label = parse_reference(reference)
    org, _, name = family.partition("/")
    return (Checkpoint.objects.select_related("family")
            .filter(family__org=org, family__name=name, label=label).first())


def _check_actor(actor, action: str, checkpoint: Checkpoint) -> None:
    """The lab's release managers say what is already public (an operator at the command line
    is actor None): it moves what every relative threshold allows."""
    if actor is not None and not has_role(actor, RELEASE_MANAGERS):
        raise deny(actor=actor, action=action, obj=checkpoint,
                   reason="marking a checkpoint as already public needs the release_managers "
                          "role")


@records_refusals
def mark_public_reference(*, actor, checkpoint: Checkpoint, note: str) -> PublicReference:
    """Mark a checkpoint as already public, so relative thresholds may name it.

    Guard: a release manager (or an operator); the checkpoint is ready (its bytes scanned and
    loadable, so its evals can run); a note saying where it is public. Side effects: one
    `reference.marked` event; after commit, the evals the current policy's relative
    thresholds read of it are requested (as its evidence). Idempotent: marking a marked
    checkpoint returns the existing mark.
    """
    _check_actor(actor, "reference.mark", checkpoint)
    if not note.strip():
        raise ReleaseInputError("say where the checkpoint is already public (a note), so a "
                                "reviewer can check it")
    if not checkpoint.is_loadable:
        raise ReleaseInputError(f"{checkpoint} is {checkpoint.get_status_display()}: only a "
                                "ready checkpoint can be evaluated, so only one can be a "
                                "reference")
    with transaction.atomic():
        existing = PublicReference.objects.select_for_update().filter(
            checkpoint=checkpoint).first()
        if existing is not None:
            return existing
        mark = PublicReference.objects.create(
            checkpoint=checkpoint, note=note.strip(),
            marked_by=actor if getattr(actor, "is_authenticated", False) else None)
        record_event(actor=actor, verb="reference.marked", obj=checkpoint, data={
            "reference": reference_name(checkpoint), "note": mark.note,
            "manifest_digest": checkpoint.manifest_digest})
        transaction.on_commit(lambda: _request_reference_evals(checkpoint))
    return mark


@records_refusals
def unmark_public_reference(*, actor, checkpoint: Checkpoint, reason: str) -> None:
    """Withdraw the mark: every relative threshold naming the checkpoint fails from now on.

    Guard: as for marking; a reason. One `reference.unmarked` event. Idempotent: unmarking an
    unmarked checkpoint changes nothing."""
    _check_actor(actor, "reference.unmark", checkpoint)
    if not reason.strip():
        raise ReleaseInputError("say why the checkpoint no longer counts as already public")
    with transaction.atomic():
        mark = PublicReference.objects.select_for_update().filter(checkpoint=checkpoint).first()
        if mark is None:
            return
        mark.delete()
        record_event(actor=actor, verb="reference.unmarked", obj=checkpoint, data={
            "reference": reference_name(checkpoint), "reason": reason.strip()})


def reference_name(checkpoint: Checkpoint) -> str:
    return f"{checkpoint.family.repo_id}@{checkpoint.label}"


def _request_reference_evals(checkpoint: Checkpoint) -> None:
    """The runs the current policy's relative thresholds read of a new reference, as its
    evidence. A refusal (an eval that cannot run on it) is logged: the threshold then says
    why the reference has no result."""
    from evaluations.services import EvalRequestError, request_evals
    from releases.policies_service import current_policy_version

    version = current_policy_version()
    names = version.policy.references.get(reference_name(checkpoint), ())
    if not names:
        return
    try:
        request_evals(actor=None, checkpoint=checkpoint, eval_names=list(names),
                      evidence=version.evidence_spec)
    except EvalRequestError as exc:
        log.warning("evals of reference %s not requested: %s", checkpoint, exc)


def reference_results(reference: str, evidence_spec, eval_names) -> ReferenceResults:
    """What a relative threshold reads of `reference`: its results under `evidence_spec`
    (the release's pinned policy's), or why there are none."""
    try:
        checkpoint = find_checkpoint(reference)
    except ReleaseInputError as exc:
        return ReferenceResults(results={}, problems={}, unavailable=str(exc))
    if checkpoint is None:
        return ReferenceResults(results={}, problems={},
                                unavailable=f"Stagegate has no checkpoint {reference}")
    if not PublicReference.objects.filter(checkpoint=checkpoint).exists():
        return ReferenceResults(results={}, problems={}, unavailable=(
            f"{reference} is not marked as already public; a release manager marks it with "
            f"manage.py mark_public_reference {reference} --note ..."))
    found = evidence(checkpoint, evidence_spec, list(eval_names), with_parent=False)
    return ReferenceResults(results=found.results(), problems=found.problems())
