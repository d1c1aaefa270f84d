"""The eval registry: what each eval is called, reads, reports and which way is better.

Each built-in is declared in builtin/specs.py (an EvalSpec: nothing heavy is imported to list
or look up evals) and runs from builtin/<name>.py (run(ctx), imported only to run). The code
hash covers the eval's module and the shared library modules it computes with, so a change to
the scoring code makes a new cache key instead of returning numbers the new code would not give.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping, Sequence

from evaluations.library.context import (Canary, EvalContext, EvalInputError, EvalOutput,
                                         ExtractionPrefix, NothingToScore)
from evaluations.library.packs import Pack

LIBRARY_DIR = Path(__file__).resolve().parent
SHARED_MODULES = ("context.py", "lm.py", "packs.py", "stats.py", "builtin/_common.py",
                  "builtin/specs.py")
BUILTIN_NAMES = ("integrity", "heldout_lm", "canary_exposure", "verbatim_extraction",
                 "pairwise_bias", "mc_knowledge", "refusal_preference", "drift_vs_parent",
                 "finetune_attack")


@dataclass(frozen=True)
class EvalSpec:
    name: str
    version: int
    description: str
    module: str  # dotted module path that defines run(ctx)
    metrics: tuple[str, ...]
    # Metric name (or fnmatch pattern, for per-canary and delta metrics) -> higher is better.
    higher_is_better: Mapping[str, bool]
    params: Mapping[str, Any] = field(default_factory=dict)
    pack_types: tuple[str, ...] = ()  # the pack types the `pack` param may name
    needs_model: bool = True
    needs_gpu: bool = False
    # On the gpu queue when the deployment has GPU workers (STAGEGATE_GPU_WORKERS) and the model
    # has at least STAGEGATE_GPU_MIN_PARAMETERS parameters; tiny models stay on the CPU queue.
    prefers_gpu: bool = False
    reads: tuple[str, ...] = ()  # context fields beyond packs: canaries, parent_model_dir, ...

    @cached_property
    def code_hash(self) -> str:
        digest = hashlib.sha256()
        module_file = LIBRARY_DIR.parent.parent / (self.module.replace(".", "/") + ".py")
        for path in [module_file] + [LIBRARY_DIR / name for name in SHARED_MODULES]:
            digest.update(path.relative_to(LIBRARY_DIR.parent.parent).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
        return digest.hexdigest()

    def run(self, ctx: EvalContext) -> EvalOutput:
        return importlib.import_module(self.module).run(ctx)

    def queue_for(self, parameters: int) -> str:
        """The Celery queue a run of this eval on a model of `parameters` goes to."""
        from django.conf import settings

        if self.needs_gpu:
            return "gpu"
        if (self.prefers_gpu and settings.STAGEGATE_GPU_WORKERS
                and parameters >= settings.STAGEGATE_GPU_MIN_PARAMETERS):
            return "gpu"
        return "evals"

    def direction(self, metric: str) -> bool | None:
        """True if higher is better, False if lower is, None if the eval does not say."""
        if metric in self.higher_is_better:
            return self.higher_is_better[metric]
        for pattern, better in self.higher_is_better.items():
            if fnmatch.fnmatchcase(metric, pattern):
                return better
        return None

    def resolve_params(self, overrides: Mapping[str, Any] | None = None) -> dict:
        """Defaults overlaid with overrides; an unknown parameter is an error, not ignored."""
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(self.params))
        if unknown:
            raise EvalInputError(f"{self.name} has no parameter {', '.join(unknown)}; "
                                 f"known: {', '.join(sorted(self.params)) or 'none'}")
        return {**self.params, **overrides}

    def pack_names(self, params: Mapping[str, Any]) -> list[str]:
        """The packs a run with these params reads (the caller loads them into ctx.packs):
        `pack`, and `measure_pack` for an eval that measures on a second pack."""
        return list(dict.fromkeys(params[key] for key in ("pack", "measure_pack")
                                  if params.get(key)))

    def check_packs(self, params: Mapping[str, Any], packs: Mapping[str, Pack]) -> None:
        for name in self.pack_names(params):
            if name not in packs:
                raise EvalInputError(f"{self.name} needs pack {name!r}, which was not provided")
            if packs[name].type not in self.pack_types:
                raise EvalInputError(f"{self.name} reads packs of type "
                                     f"{' or '.join(self.pack_types)}; {name!r} is "
                                     f"{packs[name].type}")


def _load() -> dict[str, EvalSpec]:
    """The built-ins' specs, from builtin/specs.py alone: listing evals imports no eval code."""
    from evaluations.library.builtin import specs as declared

    loaded = {}
    for name in BUILTIN_NAMES:
        spec = getattr(declared, name.upper())
        assert spec.name == name and spec.module.endswith(f".{name}"), \
            f"builtin/specs.py: {name.upper()} declares {spec.name} in {spec.module}"
        loaded[name] = spec
    return loaded


_SPECS: dict[str, EvalSpec] | None = None


def all_evals() -> dict[str, EvalSpec]:
    global _SPECS
    if _SPECS is None:
        _SPECS = _load()
    return dict(_SPECS)


def get_eval(name: str) -> EvalSpec:
    specs = all_evals()
    if name not in specs:
        raise KeyError(f"no eval named {name!r}; known: {', '.join(specs)}")
    return specs[name]


def evals_for_pack_type(pack_type: str) -> list[str]:
    """Evals that can run on a pack of this type (how a custom pack becomes usable as an eval)."""
    return [spec.name for spec in all_evals().values() if pack_type in spec.pack_types]


def run_eval(name: str, ctx: EvalContext) -> EvalOutput:
    """Run one eval: merge params with defaults, check packs, seed, run, and say what device
    and dtype the model ran in."""
    import torch

    spec = get_eval(name)
    ctx.params = spec.resolve_params(ctx.params)
    spec.check_packs(ctx.params, ctx.packs)
    if spec.needs_model and ctx.model_dir is None:
        raise EvalInputError(f"{name} needs a model folder")
    torch.manual_seed(ctx.seed)
    output = spec.run(ctx)
    output.n_samples = output.n_samples or len(output.samples)
    if output.n_samples == 0:
        # Whatever the eval: a score over zero items is no evidence, never a pass.
        raise NothingToScore(f"{name} scored no items, so it measured nothing; check that its "
                             "pack and the family's registered data are not empty, then ask "
                             "for it again")
    return output


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def eval_inputs(spec: EvalSpec, *, params: Mapping[str, Any], packs: Mapping[str, Pack] = {},
                canaries: Sequence[Canary] = (), extraction_prefixes: Sequence[ExtractionPrefix] = (),
                parent_manifest_digest: str | None = None) -> dict:
    """Everything besides the checkpoint's bytes that decides this eval's result. Only the
    fields the eval reads are included, so adding a canary re-runs canary_exposure alone."""
    inputs: dict[str, Any] = {"eval": spec.name, "version": spec.version,
                              "code_hash": spec.code_hash,
                              "params": spec.resolve_params(params),
                              "packs": sorted((p.ref for name, p in packs.items()
                                               if name in spec.pack_names(spec.resolve_params(params))),
                                              key=lambda ref: ref["name"])}
    if "canaries" in spec.reads:
        inputs["canaries"] = sorted((c.fingerprint() for c in canaries), key=lambda f: f["id"])
    if "extraction_prefixes" in spec.reads:
        # Hashed, not listed: the continuations may be sensitive training data.
        inputs["extraction_prefixes"] = hashlib.sha256(_canonical(sorted(
            (p.id, p.prefix, p.continuation) for p in extraction_prefixes)).encode()).hexdigest()
    if "parent" in spec.reads:
        inputs["parent_manifest_digest"] = parent_manifest_digest
    return inputs


def inputs_hash(inputs: Mapping[str, Any]) -> str:
    return hashlib.sha256(_canonical(inputs).encode()).hexdigest()


def eval_cache_key(*, manifest_digest: str, spec: EvalSpec, params: Mapping[str, Any],
                   packs: Mapping[str, Pack] = {}, canaries: Sequence[Canary] = (),
                   extraction_prefixes: Sequence[ExtractionPrefix] = (),
                   parent_manifest_digest: str | None = None) -> str:
    """sha256 over the checkpoint's manifest digest and eval_inputs(): equal keys, equal results."""
    inputs = eval_inputs(spec, params=params, packs=packs, canaries=canaries,
                         extraction_prefixes=extraction_prefixes,
                         parent_manifest_digest=parent_manifest_digest)
    return inputs_hash({"manifest_digest": manifest_digest, **inputs})

