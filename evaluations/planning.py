"""What one run of an eval on one checkpoint would read, and so its cache key: the single
computation behind requesting a run (services) and finding the run that counts (selectors).

Evidence is the policy's: a policy version pins, for each eval it reads, the parameters and the
packs (by name and content hash) that count (`resolve_evidence`, at load time). The run with
the key planned from those pins is the evidence; any other run of the same bytes (other
parameters, another pack, another version of a pack) is exploratory and never counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Mapping

from evaluations import catalogue
from evaluations.catalogue import EvalEntry
from evaluations.library.context import Canary as LibraryCanary
from evaluations.library.context import EvalInputError
from evaluations.library.context import ExtractionPrefix as LibraryPrefix
from evaluations.library.packs import (Pack, PackValidationError, builtin_pack_paths,
                                       load_builtin_pack, load_pack)
from evaluations.library.registry import eval_cache_key, eval_inputs, inputs_hash
from models.models import Checkpoint

# {eval name: {"params": {...resolved...}, "packs": {pack name: sha256}}}
EvidenceSpec = Mapping[str, Mapping[str, Any]]

# Which checkpoint drift_vs_parent compares against; the releases app installs "the family's
# previous approved checkpoint" in its AppConfig.ready() (evaluations does not import releases).
_parent_of: Callable[[Checkpoint], Checkpoint | None] = lambda checkpoint: None


def set_parent_resolver(resolver: Callable[[Checkpoint], Checkpoint | None]) -> None:
    global _parent_of
    _parent_of = resolver


def parent_of(checkpoint: Checkpoint) -> Checkpoint | None:
    return _parent_of(checkpoint)


def as_library_canary(canary) -> LibraryCanary:
    return LibraryCanary(id=canary.label, template=canary.template, alphabet=canary.alphabet,
                         length=canary.length, secret=canary.secret)


def as_library_prefix(prefix) -> LibraryPrefix:
    return LibraryPrefix(id=prefix.label, prefix=prefix.prefix, continuation=prefix.continuation)


class PinnedPackMissing(EvalInputError):
    """A policy pins a pack version that is not in this installation."""


@dataclass
class RunPlan:
    """Everything a run of `entry` on `checkpoint` reads besides the bytes, and its key."""

    checkpoint: Checkpoint
    entry: EvalEntry
    params: dict
    packs: dict[str, Pack]
    canaries: list = field(default_factory=list)      # evaluations.models.Canary rows
    prefixes: list = field(default_factory=list)      # evaluations.models.ExtractionPrefix rows
    parent: Checkpoint | None = None
    cache_key: str = ""
    inputs: dict = field(default_factory=dict)

    @property
    def context(self) -> dict:
        """Ids and snapshots the run reads (EvalRun.context)."""
        return {
            "packs": {name: {"sha256": pack.sha256,
                             "pack_id": self.entry.pack_id if name == self.entry.name else None}
                      for name, pack in self.packs.items()},
            "canary_ids": [c.pk for c in self.canaries],
            "prefix_ids": [p.pk for p in self.prefixes],
            "parent_checkpoint_id": self.parent.pk if self.parent else None,
            **({"task_id": self.entry.task_id} if self.entry.task_id else {}),
        }


def load_pack_version(name: str, sha256: str | None = None) -> Pack:
    """A pack by name and, when given, by exact content hash. Without a hash: the shipped pack
    when there is one (an upload never stands in for the data a built-in is judged on), else the
    newest upload."""
    if sha256 is None:
        return catalogue.load_named_pack(name)
    if name in builtin_pack_paths():
        pack = _builtin(name)
        if pack.sha256 == sha256:
            return pack
    else:
        from evaluations.models import EvalPack

        uploaded = EvalPack.objects.filter(name=name, sha256=sha256).first()
        if uploaded is not None:
            return _parsed(uploaded.sha256, uploaded.content)
    raise PinnedPackMissing(f"pack {name} with sha256 {sha256[:12]}… is not in this "
                            "installation; upload that version, or load a policy that pins the "
                            "pack you have")


@lru_cache(maxsize=64)
def _builtin(name: str) -> Pack:
    return load_builtin_pack(name)  # shipped files do not change while the process runs


@lru_cache(maxsize=256)
def _parsed(sha256: str, content: str) -> Pack:
    return load_pack(content.encode())  # keyed by content: an uploaded version never changes


def plan_run(checkpoint: Checkpoint, name: str, *, params: Mapping[str, Any] | None = None,
             pack_pins: Mapping[str, str] | None = None) -> RunPlan:
    """The run of eval `name` on `checkpoint` with these parameter overrides, reading the pinned
    pack versions (else the current ones). Raises EvalInputError, PackValidationError or
    catalogue.UnknownEval when the eval cannot run as asked."""
    entry = catalogue.lookup(name)
    pins = dict(pack_pins or {})
    if not entry.is_builtin and entry.name in pins:
        entry = catalogue.lookup_version(entry.name, pins[entry.name])
    spec = entry.spec
    resolved = spec.resolve_params({**dict(params or {}), **entry.fixed_params})
    packs = {pack: load_pack_version(pack, pins.get(pack)) for pack in spec.pack_names(resolved)}
    spec.check_packs(resolved, packs)
    family = checkpoint.family
    canaries = list(family.canaries.all()) if "canaries" in spec.reads else []
    prefixes = list(family.extraction_prefixes.all()) if "extraction_prefixes" in spec.reads else []
    parent = _parent_of(checkpoint) if "parent" in spec.reads else None
    library_canaries = [as_library_canary(c) for c in canaries]
    library_prefixes = [as_library_prefix(p) for p in prefixes]
    parent_digest = parent.manifest_digest if parent else None
    base_key = eval_cache_key(manifest_digest=checkpoint.manifest_digest, spec=spec,
                              params=resolved, packs=packs, canaries=library_canaries,
                              extraction_prefixes=library_prefixes,
                              parent_manifest_digest=parent_digest)
    inputs = eval_inputs(spec, params=resolved, packs=packs, canaries=library_canaries,
                         extraction_prefixes=library_prefixes,
                         parent_manifest_digest=parent_digest)
    if entry.task_ref is not None:
        # The task's YAML and data (by hash) and the harness's version decide its numbers.
        inputs["task"] = {k: v for k, v in entry.task_ref.items() if k != "metrics"}
        cache_key = inputs_hash({"key": base_key, "as": entry.name, "task": inputs["task"]})
    else:
        cache_key = base_key if entry.is_builtin else inputs_hash({"key": base_key,
                                                                   "as": entry.name})
    return RunPlan(checkpoint=checkpoint, entry=entry, params=resolved, packs=packs,
                   canaries=canaries, prefixes=prefixes, parent=parent, cache_key=cache_key,
                   inputs=inputs)


def plan_evidence(checkpoint: Checkpoint, evidence: EvidenceSpec,
                  names: list[str] | None = None) -> dict[str, RunPlan | str]:
    """{eval: the run that would count, or why none can} for the evals `names` (default: every
    eval the evidence spec covers)."""
    plans: dict[str, RunPlan | str] = {}
    for name in names if names is not None else list(evidence):
        rule = evidence.get(name) or {}
        try:
            plans[name] = plan_run(checkpoint, name, params=rule.get("params"),
                                   pack_pins=rule.get("packs"))
        except (EvalInputError, PackValidationError, catalogue.UnknownEval, KeyError) as exc:
            plans[name] = str(exc).strip("'\"")
    return plans


def resolve_evidence(names: list[str], declared: Mapping[str, Mapping[str, Any]]) -> dict:
    """At policy load time: for each eval the policy reads, the exact parameters (defaults,
    the policy's overrides, a pack eval's own pack) and the content hash of every pack it reads
    (the policy's pin, else the current version). Raises EvalInputError naming the eval."""
    resolved: dict[str, dict] = {}
    for name in names:
        rule = declared.get(name) or {}
        try:
            entry = catalogue.lookup(name)
            pins = dict(rule.get("packs") or {})
            if not entry.is_builtin and entry.name in pins:
                entry = catalogue.lookup_version(entry.name, pins[entry.name])
            params = entry.spec.resolve_params({**dict(rule.get("params") or {}),
                                                **entry.fixed_params})
            packs = {pack: load_pack_version(pack, pins.get(pack)).sha256
                     for pack in entry.spec.pack_names(params)}
            entry.spec.check_packs(params, {p: load_pack_version(p, s) for p, s in packs.items()})
        except (EvalInputError, PackValidationError, catalogue.UnknownEval, KeyError) as exc:
            raise EvalInputError(f"evidence for {name}: {str(exc).strip(chr(39))}") from None
        if entry.task_ref is not None:
            # A task is pinned like a pack: by the hash of its YAML and data files.
            packs[entry.name] = entry.task_ref["sha256"]
        unused = sorted(set(pins) - set(packs))
        if unused:
            raise EvalInputError(f"evidence for {name}: it reads no pack {', '.join(unused)} "
                                 f"with these parameters (it reads {', '.join(packs) or 'none'})")
        resolved[name] = {"params": params, "packs": packs}
    return resolved
