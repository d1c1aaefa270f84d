"""Every write of the evaluations app: requesting runs, uploading packs, registering canaries
and extraction prefixes. Running a run is evaluations/runner.py; what a run reads and its cache
key are planned in evaluations/planning.py."""

from __future__ import annotations

from typing import Callable, Mapping

from django.db import IntegrityError, transaction

from accounts.roles import RESEARCHERS, SAFETY, has_role, in_group
from audit.services import deny, record_event, records_refusals
from evaluations import catalogue
from evaluations.library.context import Canary as LibraryCanary
from evaluations.library.context import EvalInputError
from evaluations.library.packs import (CUSTOM_PACK_TYPES, PackValidationError,
                                       builtin_pack_paths, load_pack)
from evaluations.library.registry import all_evals
from evaluations.models import Canary, EvalPack, EvalRun, ExtractionPrefix, HarnessTask
from evaluations.signals import send_family_inputs_changed_after_commit
from evaluations.planning import (EvidenceSpec, RunPlan, as_library_canary,  # noqa: F401
                                  as_library_prefix, parent_of, plan_run, set_parent_resolver)
from models.models import Checkpoint, ModelFamily
from models.selectors import checkpoints_visible_to


class EvalRequestError(ValueError):
    """A request for evals was refused; `status` is the HTTP status that says why."""

    status = 400

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


# Which evals `evaluate` runs when none are named, and the parameters and pack versions that
# count as the policy's evidence. The releases app installs the current policy's answers in its
# AppConfig.ready(); without them, every built-in runs with its defaults.
_required_evals: Callable[[Checkpoint], list[str]] = lambda checkpoint: list(all_evals())
_evidence_of: Callable[[Checkpoint | None], EvidenceSpec] = lambda checkpoint: {}


def set_required_evals_provider(provider: Callable[[Checkpoint], list[str]]) -> None:
    global _required_evals
    _required_evals = provider


def set_evidence_provider(provider: Callable[[Checkpoint | None], EvidenceSpec]) -> None:
    global _evidence_of
    _evidence_of = provider


def required_evals(checkpoint: Checkpoint) -> list[str]:
    return _required_evals(checkpoint)


def evidence_of(checkpoint: Checkpoint | None) -> EvidenceSpec:
    """The current policy's evidence spec (what counts), for a checkpoint not yet in a release
    (or, with None, for any of them)."""
    return _evidence_of(checkpoint)


def can_request_evals(user, checkpoint: Checkpoint) -> bool:
    return (checkpoints_visible_to(user).filter(pk=checkpoint.pk).exists()
            and (has_role(user, RESEARCHERS) or has_role(user, SAFETY) or user.is_superuser))


@records_refusals
def request_evals(*, actor, checkpoint: Checkpoint, eval_names: list[str] | None = None,
                  params: Mapping[str, dict] | None = None,
                  evidence: EvidenceSpec | None = None) -> list[EvalRun]:
    """Queue evals of a checkpoint (the required ones when none are named); reuse any run
    with the same cache key.

    An eval asked for without parameters runs as the policy's evidence (`evidence`, default
    the current policy's): its pinned parameters and pack versions, so that asking again is
    asking for the run that counts. Explicit `params` make an exploratory run, which no tier,
    gate or ceiling ever reads.

    Guard: the checkpoint is ready (never a quarantined or unscanned one) and the actor may see
    it and run evals. Side effects: one `eval.requested` event per new run; tasks queued after
    commit. Idempotent: a second request for the same key returns the same run. A person's
    request queues an `errored` run again (`eval.retried`); the system's (actor None) never
    does, so nothing re-queues a broken run in a loop.
    """
    if actor is not None and not can_request_evals(actor, checkpoint):
        raise deny(actor=actor, action="eval.request", obj=checkpoint,
                   reason=f"{actor} may not run evals on {checkpoint}")
    if not checkpoint.is_loadable:
        raise EvalRequestError(f"{checkpoint} is {checkpoint.get_status_display()}: nothing may "
                               "load or evaluate it until the scanner clears it", status=409)
    names = list(dict.fromkeys(eval_names or required_evals(checkpoint)))
    # drift_vs_parent compares the other evals' results: request it last.
    names.sort(key=lambda name: name == "drift_vs_parent")
    evidence = evidence if evidence is not None else evidence_of(checkpoint)
    params = dict(params or {})
    plans = []
    for name in names:
        rule = {} if name in params else (evidence.get(name) or {})
        try:
            plans.append(plan_run(checkpoint, name, params=params.get(name, rule.get("params")),
                                  pack_pins=rule.get("packs")))
        except catalogue.UnknownEval as exc:
            raise EvalRequestError(str(exc).strip("'\"")) from None
        except (EvalInputError, PackValidationError, KeyError) as exc:
            raise EvalRequestError(f"{name}: {str(exc).strip(chr(39))}") from None
    return [_get_or_queue(actor, plan) for plan in plans]


def _get_or_queue(actor, plan: RunPlan) -> EvalRun:
    with transaction.atomic():
        run, created = _create_or_get(actor, plan)
        if created:
            record_event(actor=actor, verb="eval.requested", obj=run, data={
                "checkpoint": plan.checkpoint.pk, "eval": plan.entry.name,
                "cache_key": plan.cache_key})
            transaction.on_commit(lambda: enqueue(run))
        elif actor is not None and run.status == EvalRun.Status.ERRORED:
            # A person asking again for a run that broke is a retry; the system never is
            # (a release waiting for its evals would otherwise re-queue it forever).
            run = _requeue(actor, EvalRun.objects.select_for_update().get(pk=run.pk))
    return run


def _create_or_get(actor, plan: RunPlan) -> tuple[EvalRun, bool]:
    existing = EvalRun.objects.filter(cache_key=plan.cache_key).first()
    if existing:
        return existing, False
    entry = plan.entry
    try:
        with transaction.atomic():
            return EvalRun.objects.create(
                checkpoint=plan.checkpoint, manifest_digest=plan.checkpoint.manifest_digest,
                eval_name=entry.name, eval_version=entry.version, code_hash=entry.spec.code_hash,
                params=plan.params, inputs=plan.inputs, context=plan.context,
                cache_key=plan.cache_key, queue=entry.spec.queue_for(plan.checkpoint.parameters),
                requested_by=actor if getattr(actor, "is_authenticated", False) else None), True
    except IntegrityError:  # a concurrent request made it first
        return EvalRun.objects.get(cache_key=plan.cache_key), False


def _requeue(actor, run: EvalRun) -> EvalRun:
    """Inside the caller's transaction, the run's row locked: queue it again, counting its
    attempts afresh. One `eval.retried` event."""
    if not run.can_retry:
        return run
    previous = {"status": run.status, "error": run.error}
    run.status = EvalRun.Status.QUEUED
    run.error = run.error_detail = ""
    run.progress_done = 0
    run.finished_at = None
    run.attempts_before_retry = run.attempt
    run.save(update_fields=["status", "error", "error_detail", "progress_done", "finished_at",
                            "attempts_before_retry"])
    record_event(actor=actor, verb="eval.retried", obj=run, data={
        "eval": run.eval_name, "from": previous["status"], "error": previous["error"][:500]})
    transaction.on_commit(lambda: enqueue(run))
    return run


@records_refusals
def retry_eval_run(*, actor, run: EvalRun) -> EvalRun:
    """Ask again for a run that failed or errored: the same cache key, queued once more.

    Guard: the actor may run evals on the checkpoint (an operator at the command line is actor
    None); the checkpoint is still ready; the run failed or errored. Idempotent: a queued,
    running or succeeded run is returned as it is. One `eval.retried` event.
    """
    checkpoint = run.checkpoint
    if actor is not None and not can_request_evals(actor, checkpoint):
        raise deny(actor=actor, action="eval.retry", obj=run,
                   reason=f"{actor} may not run evals on {checkpoint}")
    if not checkpoint.is_loadable:
        raise EvalRequestError(f"{checkpoint} is {checkpoint.get_status_display()}: nothing may "
                               "load or evaluate it until the scanner clears it", status=409)
    with transaction.atomic():
        run = EvalRun.objects.select_for_update().get(pk=run.pk)
        return _requeue(actor, run)


def enqueue(run: EvalRun, *, queue: str | None = None) -> None:
    from django.conf import settings

    from evaluations.tasks import run_eval

    hard = settings.STAGEGATE_EVAL_TIME_LIMIT_SECONDS
    run_eval.apply_async((run.pk,), queue=queue or run.queue, time_limit=hard,
                         soft_time_limit=max(hard - 60, 1))


# --- canaries, prefixes, packs -------------------------------------------------------------------

def can_register_family_data(user, family: ModelFamily) -> bool:
    """Owners of the family (or a superuser) may register its canaries and prefixes."""
    return getattr(user, "is_authenticated", False) and (
        user.is_superuser or in_group(user, family.owners_id))


def _check_family_owner(actor, family: ModelFamily, action: str) -> None:
    """Owners of the family (or an operator at the command line, actor None) may register."""
    if actor is None or actor.is_superuser or in_group(actor, family.owners_id):
        return
    raise deny(actor=actor, action=action, obj=family,
               reason=f"only the owners of {family} may register {action.split('.')[0]}s for it")


@records_refusals
def add_canary(*, actor, family: ModelFamily, template: str, alphabet: str, length: int,
               secret: str) -> Canary:
    """Register a canary. Writes `canary.added` (without the secret)."""
    _check_family_owner(actor, family, "canary.add")
    try:
        LibraryCanary(id="new", template=template, alphabet=alphabet, length=length, secret=secret)
    except EvalInputError as exc:
        raise EvalRequestError(str(exc).replace("canary new: ", "")) from None
    with transaction.atomic():
        canary = Canary.objects.create(family=family, template=template, alphabet=alphabet,
                                       length=length, secret=secret, created_by=actor)
        record_event(actor=actor, verb="canary.added", obj=family, data={
            "canary": canary.label, "template": template, "alphabet": alphabet, "length": length,
            "space": len(alphabet) ** length})
        send_family_inputs_changed_after_commit(family.pk)
    return canary


@records_refusals
def add_extraction_prefix(*, actor, family: ModelFamily, prefix: str,
                          continuation: str) -> ExtractionPrefix:
    _check_family_owner(actor, family, "prefix.add")
    if not prefix.strip() or not continuation.strip():
        raise EvalRequestError("both a prefix and its continuation are needed")
    with transaction.atomic():
        entry = ExtractionPrefix.objects.create(family=family, prefix=prefix,
                                                continuation=continuation, created_by=actor)
        record_event(actor=actor, verb="prefix.added", obj=family, data={"prefix": entry.label})
        send_family_inputs_changed_after_commit(family.pk)
    return entry


@records_refusals
def add_eval_pack(*, actor, data: bytes) -> EvalPack:
    """Validate and store an uploaded pack; it becomes an eval under its own name.

    Guard: researchers or safety reviewers; the pack validates (errors name the line); its
    name is not a built-in eval's; (name, version) is new, or the same bytes again (idempotent).
    """
    if actor is not None and not (has_role(actor, RESEARCHERS) or has_role(actor, SAFETY)):
        raise deny(actor=actor, action="pack.add", reason="adding eval packs needs the "
                   "researchers or safety role")
    try:
        pack = load_pack(data, allowed_types=CUSTOM_PACK_TYPES)
    except PackValidationError as exc:
        raise EvalRequestError(str(exc)) from None
    if pack.name in all_evals() or pack.name in builtin_pack_paths():
        raise EvalRequestError(f"line 2: field `name` {pack.name!r} is the name of a built-in "
                               "eval or pack; choose another")
    existing = EvalPack.objects.filter(name=pack.name, version=str(pack.version)).first()
    if existing:
        if existing.sha256 == pack.sha256:
            return existing
        raise EvalRequestError(f"pack {pack.name} version {pack.version} already exists with "
                               "different content; raise `version` in the header", status=409)
    with transaction.atomic():
        entry = EvalPack.objects.create(
            name=pack.name, version=str(pack.version), type=pack.type,
            description=pack.description, sha256=pack.sha256, content=data.decode("utf-8"),
            items=len(pack.items), uploaded_by=actor)
        record_event(actor=actor, verb="pack.added", obj=entry, data={
            "name": pack.name, "version": pack.version, "type": pack.type, "sha256": pack.sha256,
            "items": len(pack.items)})
    return entry



@records_refusals
def add_harness_task(*, actor, config: bytes, files: Mapping[str, bytes],
                     kind: str = HarnessTask.Kind.LM_EVAL,
                     metrics: Mapping[str, bool | None] | None = None) -> HarnessTask:
    """Register a task a lab already has, with its data files: an lm-evaluation-harness YAML
    task (`kind="lm_eval"`) or an Inspect task file (`kind="inspect"`, with the `metrics` it
    reports and which way is better). It becomes an eval under the task's own name, usable in
    policy like a built-in (pinned by the hash of the task and its files together).

    Guard: an lm-eval task (declarative) needs the researchers or safety role; an Inspect task
    is Python that the workers will run, so it needs the safety role; the task checks (lm-eval:
    dataset_path json over the uploaded files, no custom Python, metrics listed; Inspect: one
    @task function, its files, its metrics); its name is not a built-in eval's, a pack's or
    another kind's. Idempotent: the same bytes again return the same row. One `task.added`
    event.
    """
    from evaluations.library.harness import parse_lm_eval_task
    from evaluations.library.inspect_tasks import parse_inspect_task

    if kind not in HarnessTask.Kind.values:
        raise EvalRequestError(f"kind {kind!r}: use lm_eval or inspect")
    if kind == HarnessTask.Kind.INSPECT:
        if actor is not None and not has_role(actor, SAFETY):
            raise deny(actor=actor, action="task.add", reason="an Inspect task is code the "
                       "workers run: registering one needs the safety role")
    elif actor is not None and not (has_role(actor, RESEARCHERS) or has_role(actor, SAFETY)):
        raise deny(actor=actor, action="task.add", reason="adding eval tasks needs the "
                   "researchers or safety role")
    try:
        bundle = (parse_inspect_task(config, files, metrics or {})
                  if kind == HarnessTask.Kind.INSPECT else parse_lm_eval_task(config, files))
    except EvalInputError as exc:
        raise EvalRequestError(str(exc)) from None
    if (bundle.name in all_evals() or bundle.name in builtin_pack_paths()
            or EvalPack.objects.filter(name=bundle.name).exists()):
        raise EvalRequestError(f"task: {bundle.name!r} is the name of a built-in eval or an "
                               "uploaded pack; choose another")
    other = HarnessTask.objects.filter(name=bundle.name).exclude(kind=kind).first()
    if other:
        raise EvalRequestError(f"{bundle.name!r} is already the name of an "
                               f"{other.get_kind_display()}; choose another")
    existing = HarnessTask.objects.filter(name=bundle.name, sha256=bundle.sha256).first()
    if existing:
        return existing
    with transaction.atomic():
        task = HarnessTask.objects.create(
            name=bundle.name, kind=kind,
            version=str(HarnessTask.objects.filter(name=bundle.name).count() + 1),
            sha256=bundle.sha256, config=bundle.config, files=dict(bundle.files),
            metrics=dict(bundle.metrics), uploaded_by=actor)
        record_event(actor=actor, verb="task.added", obj=task, data={
            "name": task.name, "kind": task.kind, "sha256": task.sha256,
            "files": sorted(task.files), "metrics": sorted(task.metrics)})
    return task
