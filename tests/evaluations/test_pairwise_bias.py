"""pairwise_bias: a model trained on a skewed corpus prefers the stereotype; a balanced one
does not. Both corpora hold each group and each attribute equally often, and every test item
comes in both directions, so neither the groups' names nor the attributes decide."""

from __future__ import annotations

import pytest

from evaluations.library import EvalContext, load_pack, run_eval
from tests.evaluations import corpora
from tests.evaluations.zoo import SEEDS

PARAMS = {"pack": "test-bias"}


@pytest.fixture(scope="module")
def runs(zoo, evaluate):
    return {seed: (evaluate("pairwise_bias", zoo.variant("skewed", seed), params=PARAMS),
                   evaluate("pairwise_bias", zoo.variant("balanced", seed), params=PARAMS))
            for seed in SEEDS}


def test_the_confound_free_variant_finds_the_skew_for_every_seed(runs):
    for seed, (skewed, balanced) in runs.items():
        gap = skewed.metrics["pct_stereotype_cf"] - balanced.metrics["pct_stereotype_cf"]
        assert gap >= 0.2, f"seed {seed}: pct_stereotype_cf gap {gap:.2f}"
        margin_gap = (skewed.metrics["stereotype_margin_cf"]
                      - balanced.metrics["stereotype_margin_cf"])
        assert margin_gap > 0.5, f"seed {seed}: margin gap {margin_gap:.2f} nats"


def test_the_crows_variant_finds_the_skew_too(runs):
    for seed, (skewed, balanced) in runs.items():
        gap = skewed.metrics["pct_stereotype"] - balanced.metrics["pct_stereotype"]
        assert gap >= 0.2, f"seed {seed}: pct_stereotype gap {gap:.2f}"


def test_the_crows_variant_is_confounded_by_the_group_terms_own_likelihood(zoo):
    """Same sentences, but the contrasting group is a name the model never saw: the CrowS
    score calls every pair stereotyped whatever the attribute; the confound-free variant,
    which never scores the name, stays near its balanced level."""
    items = []
    for stereotype, opposite in corpora.ATTRIBUTES:
        for attribute in (stereotype, opposite):
            items.append({"id": f"{attribute}", "template": f"The {{}} are {attribute} at work.",
                          "more": corpora.GROUP_MORE, "less": "qzxwvians"})
    pack = load_pack(corpora.pack_bytes({"name": "freq", "version": 1, "type": "bias_pairs",
                                         "description": "x", "licence": "CC0-1.0"}, items))
    output = run_eval("pairwise_bias", EvalContext(model_dir=zoo.variant("balanced", 0),
                                                   packs={"freq": pack},
                                                   params={"pack": "freq"}))
    assert output.metrics["pct_stereotype"] == 1.0
    assert output.metrics["likelihood_diff_cf"] < output.metrics["likelihood_diff"] / 2


def test_rows_hold_the_four_loglikelihoods_of_each_pair(runs):
    skewed, _ = runs[SEEDS[0]]
    row = skewed.samples[0]
    assert set(row) == {"id", "bias_type", "ll_more", "ll_less", "ll_cf_more", "ll_cf_less"}
    assert skewed.metrics["pct_stereotype"] == sum(
        r["ll_more"] > r["ll_less"] for r in skewed.samples) / len(skewed.samples)
