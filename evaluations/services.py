"""Every write of the evaluations app: requesting runs, uploading packs, registering canaries
and extraction prefixes. Running a run is evaluations/runner.py."""

from __future__ import annotations

from typing import Callable, Mapping

from django.db import IntegrityError, transaction

from accounts.roles import RESEARCHERS, SAFETY, has_role, in_group
from audit.services import deny, record_event, records_refusals
from evaluations import catalogue
from evaluations.catalogue import EvalEntry
from evaluations.library.context import Canary as LibraryCanary
from evaluations.library.context import EvalInputError
from evaluations.library.context import ExtractionPrefix as LibraryPrefix
from evaluations.library.packs import (CUSTOM_PACK_TYPES, PackValidationError,
                                       builtin_pack_paths, load_pack)
from evaluations.library.registry import all_evals, eval_cache_key, eval_inputs, inputs_hash
from evaluations.models import Canary, EvalPack, EvalRun, ExtractionPrefix
from models.models import Checkpoint, ModelFamily
from models.selectors import checkpoints_visible_to


class EvalRequestError(ValueError):
    """A request for evals was refused; `status` is the HTTP status that says why."""

    status = 400

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


# Which evals `evaluate` runs when none are named. The releases app installs the policy's
# answer in its AppConfig.ready(); without it, every built-in runs.
_required_evals: Callable[[Checkpoint], list[str]] = lambda checkpoint: list(all_evals())
# Which checkpoint drift_vs_parent compares against; releases installs "previous approved".
_parent_of: Callable[[Checkpoint], Checkpoint | None] = lambda checkpoint: None


def set_required_evals_provider(provider: Callable[[Checkpoint], list[str]]) -> None:
    global _required_evals
    _required_evals = provider


def set_parent_resolver(resolver: Callable[[Checkpoint], Checkpoint | None]) -> None:
    global _parent_of
    _parent_of = resolver


def required_evals(checkpoint: Checkpoint) -> list[str]:
    return _required_evals(checkpoint)


def parent_of(checkpoint: Checkpoint) -> Checkpoint | None:
    return _parent_of(checkpoint)


def can_request_evals(user, checkpoint: Checkpoint) -> bool:
    return (checkpoints_visible_to(user).filter(pk=checkpoint.pk).exists()
            and (has_role(user, RESEARCHERS) or has_role(user, SAFETY) or user.is_superuser))


@records_refusals
def request_evals(*, actor, checkpoint: Checkpoint, eval_names: list[str] | None = None,
                  params: Mapping[str, dict] | None = None) -> list[EvalRun]:
    """Queue evals of a checkpoint (the required ones when none are named); reuse any run
    with the same cache key.

    Guard: the checkpoint is ready (never a quarantined or unscanned one) and the actor may see
    it and run evals. Side effects: one `eval.requested` event per new run; tasks queued after
    commit. Idempotent: a second request for the same key returns the same run; an `errored`
    run is queued again.
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
    try:
        entries = [catalogue.lookup(name) for name in names]
    except catalogue.UnknownEval as exc:
        raise EvalRequestError(str(exc)) from None
    params = dict(params or {})
    runs = []
    for entry in entries:
        try:
            runs.append(_get_or_queue(actor, checkpoint, entry, params.get(entry.name) or {}))
        except (EvalInputError, PackValidationError, KeyError) as exc:
            raise EvalRequestError(f"{entry.name}: {exc}") from None
    return runs


def _get_or_queue(actor, checkpoint: Checkpoint, entry: EvalEntry, overrides: dict) -> EvalRun:
    spec = entry.spec
    resolved = spec.resolve_params({**overrides, **entry.fixed_params})
    packs = {name: catalogue.load_named_pack(name) for name in spec.pack_names(resolved)}
    spec.check_packs(resolved, packs)
    family = checkpoint.family
    canaries = list(family.canaries.all()) if "canaries" in spec.reads else []
    prefixes = list(family.extraction_prefixes.all()) if "extraction_prefixes" in spec.reads else []
    parent = parent_of(checkpoint) if "parent" in spec.reads else None
    library_canaries = [as_library_canary(c) for c in canaries]
    library_prefixes = [as_library_prefix(p) for p in prefixes]
    key_parts = dict(manifest_digest=checkpoint.manifest_digest, spec=spec, params=resolved,
                     packs=packs, canaries=library_canaries, extraction_prefixes=library_prefixes,
                     parent_manifest_digest=parent.manifest_digest if parent else None)
    base_key = eval_cache_key(**key_parts)
    cache_key = base_key if entry.is_builtin else inputs_hash({"key": base_key, "as": entry.name})
    inputs = eval_inputs(spec, params=resolved, packs=packs, canaries=library_canaries,
                         extraction_prefixes=library_prefixes,
                         parent_manifest_digest=key_parts["parent_manifest_digest"])
    context = {
        "packs": {name: {"sha256": pack.sha256, "pack_id": entry.pack_id if name == entry.name else None}
                  for name, pack in packs.items()},
        "canary_ids": [c.pk for c in canaries],
        "prefix_ids": [p.pk for p in prefixes],
        "parent_checkpoint_id": parent.pk if parent else None,
    }
    with transaction.atomic():
        run, created = _create_or_get(checkpoint, entry, resolved, inputs, context, cache_key,
                                      actor)
        if created:
            record_event(actor=actor, verb="eval.requested", obj=run, data={
                "checkpoint": checkpoint.pk, "eval": entry.name, "cache_key": cache_key})
            transaction.on_commit(lambda: enqueue(run))
        else:
            run = EvalRun.objects.select_for_update().get(pk=run.pk)
            if run.status == EvalRun.Status.ERRORED:
                run.status = EvalRun.Status.QUEUED
                run.error = ""
                run.progress_done = 0
                run.save(update_fields=["status", "error", "progress_done"])
                record_event(actor=actor, verb="eval.requeued", obj=run, data={"eval": entry.name})
                transaction.on_commit(lambda: enqueue(run))
    return run


def _create_or_get(checkpoint, entry, params, inputs, context, cache_key, actor):
    existing = EvalRun.objects.filter(cache_key=cache_key).first()
    if existing:
        return existing, False
    try:
        with transaction.atomic():
            return EvalRun.objects.create(
                checkpoint=checkpoint, manifest_digest=checkpoint.manifest_digest,
                eval_name=entry.name, eval_version=entry.version, code_hash=entry.spec.code_hash,
                params=params, inputs=inputs, context=context, cache_key=cache_key,
                queue="gpu" if entry.spec.needs_gpu else "evals",
                requested_by=actor if getattr(actor, "is_authenticated", False) else None), True
    except IntegrityError:  # a concurrent request made it first
        return EvalRun.objects.get(cache_key=cache_key), False


def enqueue(run: EvalRun, *, queue: str | None = None) -> None:
    from django.conf import settings

    from evaluations.tasks import run_eval

    hard = settings.STAGEGATE_EVAL_TIME_LIMIT_SECONDS
    run_eval.apply_async((run.pk,), queue=queue or run.queue, time_limit=hard,
                         soft_time_limit=max(hard - 60, 1))


def as_library_canary(canary: Canary) -> LibraryCanary:
    return LibraryCanary(id=canary.label, template=canary.template, alphabet=canary.alphabet,
                         length=canary.length, secret=canary.secret)


def as_library_prefix(prefix: ExtractionPrefix) -> LibraryPrefix:
    return LibraryPrefix(id=prefix.label, prefix=prefix.prefix, continuation=prefix.continuation)


# --- canaries, prefixes, packs -------------------------------------------------------------------

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

