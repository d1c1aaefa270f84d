"""Stagegate's evaluation library: pure Python (no Django, no database).

The worker side builds an EvalContext, calls run_eval(name, ctx), stores the EvalOutput with
build_result_record(...). See docs/evals.md for every eval's formula, inputs and metrics.
"""

from evaluations.library.context import (Canary, EvalContext, EvalError, EvalInputError,
                                         EvalOutput, ExtractionPrefix, IntegrityError,
                                         open_from_dir)
from evaluations.library.packs import (CUSTOM_PACK_TYPES, PACK_TYPES, Pack, PackValidationError,
                                       builtin_pack_paths, load_builtin_pack, load_pack)
from evaluations.library.registry import (EvalSpec, all_evals, eval_cache_key, eval_inputs,
                                          evals_for_pack_type, get_eval, inputs_hash, run_eval)
from evaluations.library.results import (build_result_record, flatten_results,
                                         merge_result_records, metric_value)

__all__ = [
    "Canary", "EvalContext", "EvalError", "EvalInputError", "EvalOutput", "ExtractionPrefix",
    "IntegrityError", "open_from_dir", "CUSTOM_PACK_TYPES", "PACK_TYPES", "Pack",
    "PackValidationError", "builtin_pack_paths", "load_builtin_pack", "load_pack", "EvalSpec",
    "all_evals", "eval_cache_key", "eval_inputs", "evals_for_pack_type", "get_eval",
    "inputs_hash", "run_eval", "build_result_record", "flatten_results", "merge_result_records",
    "metric_value",
]
