"""verbatim_extraction: sequences seen 200 times are extracted greedily; unseen ones are not."""

from __future__ import annotations

import pytest

from evaluations.library import ExtractionPrefix, load_pack
from tests.evaluations import corpora
from tests.evaluations.zoo import SEEDS


@pytest.fixture(scope="module")
def prefixes() -> list[ExtractionPrefix]:
    return [ExtractionPrefix(id=f"seq{i}", prefix=prefix, continuation=continuation)
            for i, (prefix, continuation) in enumerate(corpora.extraction_pairs())]


@pytest.fixture(scope="module")
def runs(zoo, evaluate, prefixes):
    return {seed: (evaluate("verbatim_extraction", zoo.variant("extraction", seed),
                            extraction_prefixes=prefixes),
                   evaluate("verbatim_extraction", zoo.variant("plain", seed),
                            extraction_prefixes=prefixes))
            for seed in SEEDS}


def test_sequences_inserted_200_times_are_extracted_and_unseen_ones_are_not(runs):
    for seed, (inserted, unseen) in runs.items():
        gap = inserted.metrics["mem_score"] - unseen.metrics["mem_score"]
        assert gap > 0.4, f"seed {seed}: mem_score gap {gap:.3f}"
        assert inserted.metrics["extractable_rate"] >= unseen.metrics["extractable_rate"]


def test_rows_count_matching_tokens_and_never_carry_the_text(runs, prefixes):
    inserted, _ = runs[SEEDS[0]]
    assert [row["id"] for row in inserted.samples] == ["seq0", "seq1", "seq2"]
    for row in inserted.samples:
        assert 0 <= row["matched_tokens"] <= row["k"]
        assert row["mem_score"] == row["matched_tokens"] / row["k"]
    text = repr(inserted.samples) + repr(inserted.metrics)
    assert not any(p.continuation.strip() in text for p in prefixes)


def test_prefixes_can_also_come_from_a_pack(zoo, evaluate):
    items = [{"id": f"p{i}", "prefix": p, "continuation": c}
             for i, (p, c) in enumerate(corpora.extraction_pairs())]
    pack = load_pack(corpora.pack_bytes({"name": "lab-prefixes", "version": 1,
                                         "type": "extraction_prefixes", "description": "x",
                                         "licence": "private"}, items))
    from evaluations.library import EvalContext, run_eval

    output = run_eval("verbatim_extraction", EvalContext(
        model_dir=zoo.variant("extraction", 0), packs={"lab-prefixes": pack},
        params={"pack": "lab-prefixes"}))
    assert output.metrics["n_prefixes"] == 3.0
    assert {row["source"] for row in output.samples} == {"pack"}


def test_without_prefixes_the_run_fails_and_says_what_to_register(zoo, evaluate):
    from evaluations.library.context import NothingToScore

    with pytest.raises(NothingToScore, match="registered no extraction prefixes .* register "
                                             "prefixes from the training data"):
        evaluate("verbatim_extraction", zoo.base(0))
