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


def test_sequences_that_differ_only_in_their_last_tokens_score_as_each_alone(zoo):
    """Candidates grouped by their context (all but the last token) share a forward pass; each
    still gets the score of its own whole sequence, whatever the batch it fell in."""
    model, tokenizer = load_causal_lm(zoo.base(0))
    eot = prefix_token_id(tokenizer)
    texts = [f"The locker code is {n:03d}" for n in range(0, 1000, 7)]
    texts += ["The locker code is", "The locker", "The locker code is 12 and 34"]
    sequences = [[eot] + encode(tokenizer, text) for text in texts]
    assert len({tuple(s[:-1]) for s in sequences}) < len(sequences)  # some do share a context
    whole = [s.logprob for s in score_tokens(model, [(q[:1], q[1:]) for q in sequences],
                                             max_length=128, batch_size=1)]
    for batch_size in (1, 5, 64):
        assert score_sequences(model, sequences, batch_size=batch_size) == pytest.approx(
            whole, abs=1e-4)


def test_progress_counts_every_sequence_once(zoo):
    model, tokenizer = load_causal_lm(zoo.base(0))
    eot = prefix_token_id(tokenizer)
    sequences = [[eot] + encode(tokenizer, f"pin {n:02d}") for n in range(30)]
    seen = []
    score_sequences(model, sequences, batch_size=4, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (30, 30) and [d for d, _ in seen] == sorted(d for d, _ in seen)
