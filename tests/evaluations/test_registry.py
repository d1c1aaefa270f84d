"""The registry: names, versions, code hashes, parameters, directions and cache keys."""

from __future__ import annotations

import hashlib

import pytest

from evaluations.library import (Canary, EvalInputError, all_evals, builtin_pack_paths,
                                 eval_cache_key, eval_inputs, get_eval, load_builtin_pack,
                                 load_pack)
from evaluations.library.registry import LIBRARY_DIR

BUILTINS = ["integrity", "heldout_lm", "canary_exposure", "verbatim_extraction",
            "pairwise_bias", "mc_knowledge", "refusal_preference", "drift_vs_parent",
            "finetune_attack"]


def test_every_builtin_is_registered_with_its_contract():
    specs = all_evals()
    assert list(specs) == BUILTINS
    for name, spec in specs.items():
        assert spec.version >= 1 and spec.description
        assert len(spec.code_hash) == 64
        assert not spec.needs_gpu
        assert spec.needs_model == (name != "integrity")
        for metric in spec.metrics:
            assert spec.direction(metric) is not None or metric == "delta.*", (name, metric)


def test_the_code_hash_covers_the_eval_module_and_the_shared_scoring_code():
    spec = get_eval("heldout_lm")
    digest = hashlib.sha256()
    for relative in ("builtin/heldout_lm.py", "context.py", "lm.py", "packs.py", "stats.py",
                     "builtin/_common.py", "builtin/specs.py"):
        path = LIBRARY_DIR / relative
        digest.update(f"evaluations/library/{relative}".encode() + b"\0" + path.read_bytes()
                      + b"\0")
    assert spec.code_hash == digest.hexdigest()
    assert len({s.code_hash for s in all_evals().values()}) == len(BUILTINS)


def test_unknown_parameters_are_refused_and_defaults_fill_the_rest():
    spec = get_eval("canary_exposure")
    assert spec.resolve_params({"n_candidates": 500})["exact_limit"] == 100_000
    with pytest.raises(EvalInputError, match="no parameter exact_limt"):
        spec.resolve_params({"exact_limt": 5})


def test_a_pack_of_the_wrong_type_is_refused_before_anything_runs():
    spec = get_eval("heldout_lm")
    with pytest.raises(EvalInputError, match="reads packs of type scored_text"):
        spec.check_packs({"pack": "mc-facts-en"}, {"mc-facts-en": load_builtin_pack("mc-facts-en")})
    with pytest.raises(EvalInputError, match="was not provided"):
        spec.check_packs({"pack": "heldout-en"}, {})


CANARY = Canary(id="1", template="code {}", alphabet="0123456789", length=4, secret="7391")


def key(name: str, **kwargs) -> str:
    spec = get_eval(name)
    defaults = {"manifest_digest": "d" * 64, "spec": spec, "params": {}}
    return eval_cache_key(**{**defaults, **kwargs})


def test_the_same_inputs_give_the_same_key_and_any_change_a_new_one():
    assert key("canary_exposure", canaries=[CANARY]) == key("canary_exposure", canaries=[CANARY])
    assert key("canary_exposure", canaries=[CANARY]) != key("canary_exposure")
    assert key("canary_exposure") != key("canary_exposure", manifest_digest="e" * 64)
    assert key("canary_exposure") != key("canary_exposure", params={"n_candidates": 10})


def test_adding_a_canary_reruns_canary_exposure_but_not_other_evals():
    packs = {"heldout-en": load_builtin_pack("heldout-en")}
    assert key("heldout_lm", packs=packs) == key("heldout_lm", packs=packs, canaries=[CANARY])


def test_a_changed_pack_byte_changes_the_key():
    base = load_builtin_pack("heldout-en")
    edited = load_pack(builtin_pack_paths()["heldout-en"].read_bytes() + b"\n")
    assert key("heldout_lm", packs={"heldout-en": base}) != key(
        "heldout_lm", packs={"heldout-en": edited})


def test_the_key_material_never_holds_a_canary_secret():
    inputs = eval_inputs(get_eval("canary_exposure"), params={}, canaries=[CANARY])
    assert "7391" not in repr(inputs)
    assert "7391" not in repr(CANARY)


def test_every_plotted_headline_metric_is_one_its_eval_reports():
    from evaluations.views import HEADLINE_METRICS

    for name, metric in HEADLINE_METRICS.items():
        assert metric in get_eval(name).metrics, (name, metric)


def test_listing_and_looking_up_evals_imports_no_model_code():
    """The web process lists evals on every checkpoint page: that must not load torch."""
    import subprocess
    import sys

    code = ("import sys; from evaluations.library.registry import all_evals; "
            "specs = all_evals(); assert len(specs) == 9; "
            "print(sorted(m for m in ('torch', 'transformers', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=LIBRARY_DIR.parent.parent, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
