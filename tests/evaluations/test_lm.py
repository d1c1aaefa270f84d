"""Model loading and lm-evaluation-harness's scoring semantics."""

from __future__ import annotations

import math
import shutil

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from evaluations.library.lm import (dtype_for, encode, encode_pair, greedy_continue,
                                    greedy_generate, load_causal_lm, loglikelihood,
                                    loglikelihood_rolling, pick_device,
                                    prefix_token_id, rolling_windows)


@pytest.fixture(scope="module")
def lm(zoo):
    return load_causal_lm(zoo.base(0), device="cpu")


def manual_logprob(model, tokens: list[int], start: int) -> float:
    """Sum of log p(tokens[i] | tokens[:i]) for i >= start, in one forward pass."""
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([tokens])).logits[0].float()
    logp = torch.log_softmax(logits, -1)
    return sum(float(logp[i - 1, tokens[i]]) for i in range(start, len(tokens)))


def test_the_device_is_chosen_at_run_time_with_bf16_only_on_gpus():
    assert pick_device("cpu") == "cpu"
    assert pick_device(None) == ("cuda" if torch.cuda.is_available() else "cpu")
    assert dtype_for("cuda:0") == torch.bfloat16 and dtype_for("cpu") == torch.float32


def test_a_model_loads_in_eval_mode_in_fp32_on_the_cpu(lm):
    model, _ = lm
    assert not model.training
    assert next(model.parameters()).dtype == torch.float32


def test_trailing_context_whitespace_moves_to_the_continuation(lm):
    _, tokenizer = lm
    context, continuation = encode_pair(tokenizer, "The farmer ", "ploughs")
    assert context == encode(tokenizer, "The farmer")
    assert encode(tokenizer, "The farmer ploughs")[len(context):] == continuation


def test_an_empty_context_is_the_prefix_token_bos_else_eos(lm):
    _, tokenizer = lm
    assert encode_pair(tokenizer, "", "Hello") == ([prefix_token_id(tokenizer)],
                                                    encode(tokenizer, "Hello"))


def test_loglikelihood_is_the_sum_of_continuation_token_logprobs(lm):
    model, tokenizer = lm
    context, continuation = encode_pair(tokenizer, "The baker often", " bakes before noon.")
    expected = manual_logprob(model, context + continuation, len(context))
    (value, _), = loglikelihood(model, tokenizer, [("The baker often", " bakes before noon.")])
    assert value == pytest.approx(expected, abs=1e-4)


def test_batched_scores_equal_one_at_a_time_scores(lm):
    model, tokenizer = lm
    requests = [("The pilot", " flies."), ("", "A child plays near the river."),
                ("Question: What is the capital of Arbury?\nAnswer:", " Pell"),
                ("The mayor always", " speaks at the station.")]
    together = loglikelihood(model, tokenizer, requests, batch_size=4)
    alone = [loglikelihood(model, tokenizer, [r], batch_size=1)[0] for r in requests]
    for (a, greedy_a), (b, greedy_b) in zip(together, alone):
        assert a == pytest.approx(b, abs=1e-4) and greedy_a == greedy_b


def test_a_greedy_continuation_is_reported_as_greedy(lm):
    model, tokenizer = lm
    context = "The gardener sometimes"
    generated = greedy_generate(model, tokenizer, [context], max_new_tokens=4)[0]
    (_, is_greedy), = loglikelihood(model, tokenizer, [(context, generated)])
    assert is_greedy


@settings(max_examples=200, deadline=None, database=None)
@given(length=st.integers(0, 300), max_length=st.integers(1, 64))
def test_rolling_windows_predict_every_token_once_within_max_length(length, max_length):
    tokens = list(range(1000, 1000 + length))
    windows = rolling_windows(tokens, prefix_token=7, max_length=max_length)
    assert [t for _, predicted in windows for t in predicted] == tokens
    for index, (context, predicted) in enumerate(windows):
        inputs = (context + predicted)[-(max_length + 1):][:-1]
        assert len(inputs) <= max_length
        # The last len(predicted) inputs are what the predicted tokens are scored from.
        assert inputs[len(inputs) - len(predicted):][1:] == predicted[:-1]
        assert context[-1] == (7 if index == 0 else tokens[tokens.index(predicted[0]) - 1])


def test_rolling_loglikelihood_of_a_short_text_is_one_pass_after_the_prefix_token(lm):
    model, tokenizer = lm
    text = "The doctor rarely heals at the station."
    tokens = [prefix_token_id(tokenizer)] + encode(tokenizer, text)
    assert loglikelihood_rolling(model, tokenizer, [text])[0] == pytest.approx(
        manual_logprob(model, tokens, 1), abs=1e-4)


def test_rolling_loglikelihood_of_a_long_text_sums_its_windows(lm):
    model, tokenizer = lm
    text = " ".join(["The farmer often ploughs in the morning."] * 6)
    assert len(encode(tokenizer, text)) > 2 * 16
    value = loglikelihood_rolling(model, tokenizer, [text], max_length=16)[0]
    windows = rolling_windows(encode(tokenizer, text), prefix_token_id(tokenizer), 16)
    expected = sum(manual_logprob(model, (c + p)[-17:], len((c + p)[-17:]) - len(p))
                   for c, p in windows)
    assert value == pytest.approx(expected, abs=1e-3)
    assert math.isfinite(value)


def test_greedy_continuations_do_not_depend_on_batching(lm):
    model, tokenizer = lm
    prompts = [encode(tokenizer, p) for p in ("The pilot", "The baker often", "The pilot",
                                              "Question: What is the capital of Pimlow?")]
    together = greedy_continue(model, prompts, 6, max_length=128, batch_size=8)
    alone = [greedy_continue(model, [p], 6, max_length=128)[0] for p in prompts]
    assert together == alone and all(len(t) == 6 for t in together)


def test_greedy_continuation_matches_step_by_step_argmax(lm):
    model, tokenizer = lm
    tokens = encode(tokenizer, "The teacher always")
    generated = greedy_continue(model, [tokens], 5, max_length=128)[0]
    expected = list(tokens)
    with torch.inference_mode():
        for _ in range(5):
            expected.append(int(model(input_ids=torch.tensor([expected])).logits[0, -1].argmax()))
    assert generated == expected[len(tokens):]


def test_pickle_weights_are_refused_unless_allowed_and_then_give_the_same_numbers(lm, tmp_path):
    model, tokenizer = lm
    folder = tmp_path / "pickled"
    folder.mkdir()
    model.config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match="allow_pickle_weights"):
        load_causal_lm(folder)
    pickled, pickled_tokenizer = load_causal_lm(folder, allow_pickle_weights=True)
    request = [("The mayor", " speaks quietly.")]
    assert loglikelihood(pickled, pickled_tokenizer, request) == loglikelihood(
        model, tokenizer, request)


def test_loading_reads_no_code_from_the_checkpoint(zoo, tmp_path):
    folder = tmp_path / "remote-code"
    shutil.copytree(zoo.base(0), folder)
    config = (folder / "config.json").read_text()
    (folder / "config.json").write_text(config.replace(
        '"model_type": "gpt2"', '"model_type": "gpt2", "auto_map": '
        '{"AutoModelForCausalLM": "evil.EvilModel"}'))
    (folder / "evil.py").write_text("raise SystemExit('remote code ran')\n")
    model, _ = load_causal_lm(folder)  # the auto_map is ignored, the stock class is used
    assert type(model).__name__ == "GPT2LMHeadModel"
