"""A canary's secret never leaves the eval: not in metrics, rows, notes, plots, the stored
record, logs or printed output. The secret is a string no other text in the zoo contains."""

from __future__ import annotations

import json
import logging

from evaluations.library import build_result_record, get_eval
from tests.evaluations import corpora


def everything_visible(output, record) -> str:
    return "\n".join([json.dumps(output.metrics), output.samples_jsonl().decode(),
                      json.dumps(output.notes), json.dumps(output.runtime),
                      json.dumps(record, default=str),
                      *(png.decode("latin-1") for png in output.artifacts.values())])


def test_the_secret_appears_nowhere_in_what_the_eval_returns(canary_runs):
    spec = get_eval("canary_exposure")
    for inserted, unseen in canary_runs.values():
        for output in (inserted, unseen):
            record = build_result_record(spec=spec, output=output, params=spec.resolve_params({}),
                                         checkpoint_digest="d" * 64, manifest=[],
                                         cache_key="k" * 64)
            visible = everything_visible(output, record)
            assert corpora.CANARY_SECRET not in visible
            assert corpora.CANARY_TEMPLATE.format(corpora.CANARY_SECRET) not in visible


def test_the_secret_is_not_logged_or_printed_while_the_eval_runs(zoo, evaluate, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    evaluate("canary_exposure", zoo.variant("canary", 0), canaries=[corpora.secret_canary()],
             params={"exact_limit": 1000, "n_candidates": 200})
    out, err = capfd.readouterr()
    assert corpora.CANARY_SECRET not in caplog.text + out + err


def test_the_plot_is_drawn_from_scores_only():
    import inspect

    from evaluations.library.plots import plot_canary_null

    assert "secret" not in {p for p in inspect.signature(plot_canary_null).parameters
                            if p not in ("secret_score",)}
