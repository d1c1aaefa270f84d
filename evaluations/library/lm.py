"""Loading a causal LM for evaluation, and lm-evaluation-harness's scoring primitives.

The scoring follows lm-eval's HFLM exactly, so our numbers can sit next to published ones:
- loglikelihood(context, continuation): trailing whitespace of the context moves to the
  continuation, the pair is encoded whole and the continuation is what follows the context's
  tokens; an empty context is replaced by the prefix token (BOS, else end-of-text); inputs are
  cut to the last max_length tokens; is_greedy is whether every continuation token is the argmax.
- loglikelihood_rolling(text): [prefix] + tokens, cut into disjoint windows of max_length
  (lm-eval's get_rolling_token_windows with context_len=1), summed.
Requests are sorted by length (longest first) and right-padded in batches; padding sits after
the real tokens of a causal model, so it cannot change their scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch

from evaluations.library.context import EvalInputError
from models.formats.layout import missing_tokenizer

Progress = Callable[[int, int], None]


def pick_device(device: str | None = None) -> str:
    """The device named, else CUDA when there is one, else the CPU."""
    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def dtype_for(device: str) -> torch.dtype:
    # bf16 halves memory on accelerators; on the CPU it is slow and lossy, so fp32 there.
    return torch.bfloat16 if device.startswith("cuda") else torch.float32


def load_causal_lm(folder: Path, *, device: str | None = None, allow_pickle_weights: bool = False):
    """(model, tokenizer) from a local Hugging Face folder, in eval mode on `device`.

    Never reaches a hub and never runs code shipped with the checkpoint. Weights come from
    safetensors; pickle (.bin) weights only when the registry's scanner passed them and the
    caller says so, and then through torch.load(weights_only=True).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    folder = Path(folder)
    has_safetensors = any(folder.glob("*.safetensors"))
    if not has_safetensors and not allow_pickle_weights:
        raise FileNotFoundError(f"no safetensors weights in {folder.name}; pickle weights need "
                                "allow_pickle_weights=True after a safe scan")
    device = pick_device(device)
    common = {"local_files_only": True, "trust_remote_code": False}
    require_tokenizer(folder)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, **common)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MissingTokenizer(f"the checkpoint's tokenizer files could not be loaded "
                               f"({_first_line(exc)}); save the tokenizer with "
                               "tokenizer.save_pretrained(folder) and submit the folder as a "
                               "new checkpoint") from None
    model = AutoModelForCausalLM.from_pretrained(
        folder, use_safetensors=has_safetensors, weights_only=True, dtype=dtype_for(device),
        **common)
    model.to(device)
    model.eval()  # no dropout: the same weights give the same numbers on every run
    return model, tokenizer


class MissingTokenizer(EvalInputError):
    """The model folder has no tokenizer a language-model eval could score text with."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def require_tokenizer(folder: Path) -> None:
    """Fail closed, in a sentence that names the files, when no tokenizer was submitted: an
    eval must never score text through a tokenizer that is not the checkpoint's own."""
    problem = missing_tokenizer(path.name for path in Path(folder).iterdir() if path.is_file())
    if problem:
        raise MissingTokenizer(problem)


def runtime_info(model) -> dict:
    return {"device": str(next(model.parameters()).device),
            "dtype": str(next(model.parameters()).dtype).removeprefix("torch.")}


def max_length_of(model, tokenizer, default: int = 2048) -> int:
    """lm-eval's HFLM.max_length: the model config's context size, else the tokenizer's."""
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(model.config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 1_000_000:
        return limit
    return default


def prefix_token_id(tokenizer) -> int:
    """The token that stands in for an empty context: lm-eval's HFLM.prefix_token_id, the
    beginning-of-sequence token, else end-of-text (for GPT-2 they are the same token)."""
    for candidate in (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id):
        if candidate is not None:
            return int(candidate)
    raise ValueError("the tokenizer has no end-of-text, beginning or padding token")


def encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """lm-eval's request encoding: (context tokens, continuation tokens)."""
    if context == "":
        return [prefix_token_id(tokenizer)], encode(tokenizer, continuation)
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = encode(tokenizer, context + continuation)
    context_tokens = encode(tokenizer, context)
    return context_tokens, whole[len(context_tokens):]


def _cache_of(output):
    """The key/value cache a forward pass returned (`cache` in recent transformers, formerly
    `past_key_values`)."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def _with_cache(model, cache) -> dict:
    """Forward kwargs that pass a key/value cache back in, under the name the model takes."""
    import inspect

    name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    return {name: cache}


@dataclass(frozen=True)
class TokenScore:
    logprob: float  # sum of natural-log probabilities of the continuation tokens
    is_greedy: bool
    n_tokens: int


def _batches(order: list[int], batch_size: int) -> Iterator[list[int]]:
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


def log_probs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Next-token log-probabilities in float32 (bf16 logits would lose the small differences
    that exposure and KL are made of)."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    return torch.log_softmax(logits.float(), dim=-1)


@torch.inference_mode()
def score_tokens(model, requests: Sequence[tuple[list[int], list[int]]], *, max_length: int,
                 batch_size: int = 16, progress: Progress | None = None) -> list[TokenScore]:
    """Score token-level (context, continuation) requests, lm-eval's _loglikelihood_tokens."""
    device = next(model.parameters()).device
    inputs, spans = [], []
    for context, continuation in requests:
        if not continuation:
            raise ValueError("a continuation must have at least one token")
        if len(continuation) > max_length:
            raise ValueError(f"continuation of {len(continuation)} tokens exceeds max_length "
                             f"{max_length}")
        tokens = (list(context) + list(continuation))[-(max_length + 1):][:-1]
        inputs.append(tokens)
        spans.append(list(continuation))
    order = sorted(range(len(inputs)), key=lambda i: (-len(inputs[i]), i))
    results: list[TokenScore | None] = [None] * len(inputs)
    done = 0
    for batch in _batches(order, batch_size):
        width = len(inputs[batch[0]])
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        # targets[r, j] is the token position j predicts; scored marks the continuation's.
        targets = torch.zeros((len(batch), width), dtype=torch.long)
        scored = torch.zeros((len(batch), width), dtype=torch.bool)
        for row, index in enumerate(batch):
            end, cont = len(inputs[index]), spans[index]
            ids[row, :end] = torch.tensor(inputs[index])
            mask[row, :end] = 1
            targets[row, end - len(cont):end] = torch.tensor(cont)
            scored[row, end - len(cont):end] = True
        targets, scored = targets.to(device), scored.to(device)
        logp = log_probs(model, ids.to(device), mask.to(device))
        picked = logp.gather(-1, targets[..., None]).squeeze(-1).double()
        sums = torch.where(scored, picked, 0.0).sum(-1).tolist()
        greedy = ((logp.argmax(-1) == targets) | ~scored).all(-1).tolist()
        del logp  # batch x width x vocab floats: the largest thing an eval holds
        for row, index in enumerate(batch):
            results[index] = TokenScore(sums[row], bool(greedy[row]), len(spans[index]))
        done += len(batch)
        if progress:
            progress(done, len(inputs))
    return results  # type: ignore[return-value]


@torch.inference_mode()
def score_sequences(model, sequences: Sequence[list[int]], *, batch_size: int = 64,
                    progress: Progress | None = None) -> list[float]:
    """Sum of log-probabilities of every token of each sequence after its first (the first is
    the conditioning token, e.g. end-of-text); equal to score_tokens([s[0]], s[1:]).

    Built for many sequences that differ in a few tokens (a canary's candidates differ only in
    the secret's slot), as a tree of shared work: the token prefix all sequences share runs
    once; after it, the sequences form a trie, and each node of the trie that some sequence
    continues is run once, as one token on its parent's key/value cache, `batch_size` nodes of
    one depth per forward pass (no padding: nodes of one depth have one length). A sequence's
    last token is only scored, never run. 10,000 four-digit candidates cost 1,110 tokens run
    (10 + 100 + 1,000) instead of 40,000.
    """
    import copy
    from collections import Counter

    if not sequences:
        return []
    shortest = min(len(s) for s in sequences)
    if shortest < 2:
        raise ValueError("every sequence needs a conditioning token and one token to score")
    device = next(model.parameters()).device
    shared = 0
    while shared < shortest - 1 and all(s[shared] == sequences[0][shared] for s in sequences):
        shared += 1
    prefix = torch.tensor([list(sequences[0][:shared])], device=device)
    out = model(input_ids=prefix, use_cache=True)
    prefix_logp = torch.log_softmax(out.logits[0].float(), dim=-1)
    prefix_score = float(sum(prefix_logp[i - 1, int(prefix[0, i])] for i in range(1, shared)))

    suffixes = [tuple(s[shared:]) for s in sequences]
    ends = Counter(suffixes)
    followers: dict[tuple[int, ...], set[int]] = {}  # path -> the tokens that follow it
    for suffix in ends:
        for end in range(len(suffix)):
            followers.setdefault(suffix[:end], set()).add(suffix[end])
    path_score: dict[tuple[int, ...], float] = {(): 0.0}
    done = 0

    def visit(paths: list[tuple[int, ...]], logp: torch.Tensor, cache) -> None:
        """Score what follows each path (logp: their next-token log-probabilities, cache:
        their keys and values, row for row), then run the paths that are continued further."""
        nonlocal done
        children = []
        for row, path in enumerate(paths):
            tokens = sorted(followers[path])
            for token, value in zip(tokens, logp[row, tokens].double().tolist()):
                child = path + (token,)
                path_score[child] = path_score[path] + value
                done += ends.get(child, 0)
                if child in followers:
                    children.append((row, child))
        if progress:
            progress(done, len(sequences))
        batches = list(_batches(children, batch_size))
        for number, batch in enumerate(batches):
            rows = torch.tensor([row for row, _ in batch], device=device)
            # reorder_cache rebinds the cache's tensors: the last batch may take the parent's.
            branch = cache if number == len(batches) - 1 else copy.deepcopy(cache)
            branch.reorder_cache(rows)
            ids = torch.tensor([[child[-1]] for _, child in batch], device=device)
            step = model(input_ids=ids, use_cache=True, **_with_cache(model, branch))
            visit([child for _, child in batch], torch.log_softmax(step.logits[:, -1].float(), -1),
                  _cache_of(step))

    visit([()], prefix_logp[shared - 1][None], _cache_of(out))
    return [prefix_score + path_score[suffix] for suffix in suffixes]


def loglikelihood(model, tokenizer, requests: Sequence[tuple[str, str]], *,
                  max_length: int | None = None, batch_size: int = 16,
                  progress: Progress | None = None) -> list[tuple[float, bool]]:
    """[(sum of log-probabilities of continuation given context, is_greedy)], as lm-eval."""
    scores = loglikelihood_scores(model, tokenizer, requests, max_length=max_length,
                                  batch_size=batch_size, progress=progress)
    return [(score.logprob, score.is_greedy) for score in scores]


def loglikelihood_scores(model, tokenizer, requests: Sequence[tuple[str, str]], *,
                         max_length: int | None = None, batch_size: int = 16,
                         progress: Progress | None = None) -> list[TokenScore]:
    """loglikelihood, keeping the continuation's token count (for per-token means)."""
    max_length = max_length or max_length_of(model, tokenizer)
    encoded = [encode_pair(tokenizer, context, continuation) for context, continuation in requests]
    return score_tokens(model, encoded, max_length=max_length, batch_size=batch_size,
                        progress=progress)


def rolling_windows(tokens: list[int], prefix_token: int,
                    max_length: int) -> list[tuple[list[int], list[int]]]:
    """lm-eval's get_rolling_token_windows(context_len=1) followed by make_disjoint_window."""
    windows: list[tuple[list[int], list[int]]] = []
    if not tokens:
        return windows
    first = min(max_length, len(tokens))
    windows.append(([prefix_token] + tokens[:first - 1], tokens[:first]))
    predicted = first
    while predicted < len(tokens):
        size = min(len(tokens) - predicted, max_length)
        end = predicted + size
        windows.append((tokens[max(end - max_length - 1, 0):end - 1], tokens[end - size:end]))
        predicted += size
    return [(context[:len(context) - (len(pred) - 1)], pred) for context, pred in windows]


def loglikelihood_rolling(model, tokenizer, texts: Sequence[str], *, max_length: int | None = None,
                          batch_size: int = 16, progress: Progress | None = None) -> list[float]:
    """Sum of log-probabilities of each whole text, as lm-eval's loglikelihood_rolling."""
    max_length = max_length or max_length_of(model, tokenizer)
    prefix = prefix_token_id(tokenizer)
    requests, owner = [], []
    for index, text in enumerate(texts):
        for window in rolling_windows(encode(tokenizer, text), prefix, max_length):
            requests.append(window)
            owner.append(index)
    scores = score_tokens(model, requests, max_length=max_length, batch_size=batch_size,
                          progress=progress)
    totals = [0.0] * len(texts)
    for index, score in zip(owner, scores):
        totals[index] += score.logprob
    return totals


@torch.inference_mode()
def greedy_continue(model, prompts: Sequence[list[int]], n_tokens: int, *, max_length: int,
                    batch_size: int = 16, progress: Progress | None = None) -> list[list[int]]:
    """The n_tokens the model picks greedily after each prompt (no early stop at end-of-text).

    Prompts are batched by equal length, so no padding is needed and batched results equal
    one-by-one results. Prompts are cut on the left to leave room for the continuation.
    """
    device = next(model.parameters()).device
    keep = max_length - n_tokens
    if keep < 1:
        raise ValueError(f"cannot generate {n_tokens} tokens within max_length {max_length}")
    cut = [list(prompt)[-keep:] for prompt in prompts]
    if any(not prompt for prompt in cut):
        raise ValueError("every prompt needs at least one token")
    by_length: dict[int, list[int]] = {}
    for index, prompt in enumerate(cut):
        by_length.setdefault(len(prompt), []).append(index)
    results: list[list[int]] = [[] for _ in cut]
    done = 0
    for length in sorted(by_length, reverse=True):
        for batch in _batches(by_length[length], batch_size):
            ids = torch.tensor([cut[i] for i in batch], device=device)
            out = model(input_ids=ids, use_cache=True)
            generated = []
            for step in range(n_tokens):
                next_ids = out.logits[:, -1, :].float().argmax(-1)
                generated.append(next_ids)
                if step + 1 < n_tokens:
                    out = model(input_ids=next_ids[:, None], use_cache=True,
                                **_with_cache(model, _cache_of(out)))
            stacked = torch.stack(generated, dim=1).cpu().tolist()
            for row, index in enumerate(batch):
                results[index] = stacked[row]
            done += len(batch)
            if progress:
                progress(done, len(cut))
    return results


def greedy_generate(model, tokenizer, contexts: Sequence[str], *, max_new_tokens: int,
                    until: Sequence[str] = (), max_length: int | None = None,
                    batch_size: int = 16, progress: Progress | None = None) -> list[str]:
    """Greedy text continuations, cut at the first stop string (lm-eval's generate_until)."""
    max_length = max_length or max_length_of(model, tokenizer)
    prompts = [encode(tokenizer, context) or [prefix_token_id(tokenizer)] for context in contexts]
    tokens = greedy_continue(model, prompts, max_new_tokens, max_length=max_length,
                             batch_size=batch_size, progress=progress)
    texts = []
    for continuation in tokens:
        text = tokenizer.decode(continuation, skip_special_tokens=False)
        for stop in until:
            if stop and stop in text:
                text = text[:text.index(stop)]
        texts.append(text)
    return texts
