"""score_sequences: running a shared prefix once gives the same numbers as scoring each whole."""

from __future__ import annotations

import pytest

from evaluations.library.lm import (encode, load_causal_lm, prefix_token_id, score_sequences,
                                    score_tokens)


def test_shared_prefix_scores_equal_whole_sequence_scores(zoo):
    model, tokenizer = load_causal_lm(zoo.base(0))
    eot = prefix_token_id(tokenizer)
    texts = [f"The invoice number is {n:04d}." for n in (7, 42, 4821, 9999)]
    texts += ["The invoice was paid.", "Something else entirely."]  # shorter shared prefix
    sequences = [[eot] + encode(tokenizer, text) for text in texts]
    shared = score_sequences(model, sequences, batch_size=4)
    whole = [s.logprob for s in score_tokens(model, [(q[:1], q[1:]) for q in sequences],
                                             max_length=128)]
    assert shared == pytest.approx(whole, abs=1e-4)


def test_a_sequence_needs_a_token_to_score(zoo):
    _, tokenizer = load_causal_lm(zoo.base(0))
    with pytest.raises(ValueError):
        score_sequences(None, [[prefix_token_id(tokenizer)]])
