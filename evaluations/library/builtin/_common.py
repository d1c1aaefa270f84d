"""Helpers every model-reading built-in shares: loading the model once, finding its pack,
and turning per-item numbers into a metric with its standard error."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from evaluations.library.context import EvalContext, EvalInputError, EvalOutput
from evaluations.library.lm import load_causal_lm, pick_device, runtime_info
from evaluations.library.packs import Pack
from evaluations.library.stats import mean, stderr_of_mean


def load_model(ctx: EvalContext, folder: Path | None = None):
    """(model, tokenizer, runtime) for ctx.model_dir (or the parent's folder), on ctx.device:
    from ctx.model_cache when the context has one and knows the folder's digest. The model may
    be shared with other evals: never change it (copy it to train it)."""
    folder = Path(folder) if folder is not None else ctx.require_model_dir()

    def load(path: Path):
        return load_causal_lm(path, device=ctx.device,
                              allow_pickle_weights=ctx.allow_pickle_weights)

    digest = {ctx.model_dir and Path(ctx.model_dir): ctx.model_digest,
              ctx.parent_model_dir and Path(ctx.parent_model_dir): ctx.parent_model_digest
              }.get(folder)
    if ctx.model_cache is None or not digest:
        model, tokenizer = load(folder)
    else:
        key = (digest, pick_device(ctx.device), ctx.allow_pickle_weights)
        model, tokenizer = ctx.model_cache.get(key, folder, load)
    return model, tokenizer, runtime_info(model)


def the_pack(ctx: EvalContext, types: Sequence[str]) -> Pack:
    """The pack named by the `pack` param, checked for type."""
    name = ctx.params.get("pack")
    if not name or name not in ctx.packs:
        raise EvalInputError(f"pack {name!r} was not provided")
    pack = ctx.packs[name]
    if pack.type not in types:
        raise EvalInputError(f"pack {name!r} is {pack.type}; expected {' or '.join(types)}")
    return pack


def add_mean(output: EvalOutput, metric: str, values: Sequence[float]) -> None:
    """Record a per-item mean and its stderr; None when there are no items (never a 0)."""
    output.metrics[metric] = mean(values)
    error = stderr_of_mean(values)
    if error is not None:
        output.stderr[metric] = error
