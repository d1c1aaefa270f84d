"""Helpers every model-reading built-in shares: loading the model once, finding its pack,
and turning per-item numbers into a metric with its standard error."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from evaluations.library.context import EvalContext, EvalInputError, EvalOutput
from evaluations.library.lm import load_causal_lm, runtime_info
from evaluations.library.packs import Pack
from evaluations.library.stats import mean, stderr_of_mean


def load_model(ctx: EvalContext, folder: Path | None = None):
    """(model, tokenizer, runtime) for ctx.model_dir (or `folder`), on ctx.device."""
    folder = folder if folder is not None else ctx.require_model_dir()
    model, tokenizer = load_causal_lm(folder, device=ctx.device,
                                      allow_pickle_weights=ctx.allow_pickle_weights)
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
