"""Tiny GPT-2 causal LMs made and trained on the spot, for the demo, tests and benchmarks.

Everything is local: a byte-level BPE tokenizer trained on the given texts, a GPT-2 config that
transformers knows without remote code, and a few hundred optimiser steps on the CPU. The result
is a standard Hugging Face model folder (config.json, model.safetensors, tokenizer files,
generation_config.json, README.md). Same inputs and seed, same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

EOS = "<|endoftext|>"


@dataclass(frozen=True)
class TinyGPTSpec:
    n_layer: int = 2
    n_embd: int = 64
    n_head: int = 4
    n_positions: int = 128
    vocab_size: int = 384
    steps: int = 200
    batch_size: int = 16
    seq_len: int = 64
    learning_rate: float = 3e-3
    seed: int = 0
    extra: dict = field(default_factory=dict)

    def cache_key(self, texts: Sequence[str], tokenizer_texts: Sequence[str] | None = None) -> str:
        payload = json.dumps({"spec": asdict(self), "texts": list(texts),
                              "tokenizer_texts": list(tokenizer_texts or [])}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:24]


def train_tokenizer(texts: Sequence[str], vocab_size: int):
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(list(texts), vocab_size=vocab_size, min_frequency=1,
                            special_tokens=[EOS], show_progress=False)
    return PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token=EOS,
                                   eos_token=EOS, unk_token=EOS, pad_token=EOS)


def build_tiny_gpt(folder: Path, texts: Sequence[str], spec: TinyGPTSpec = TinyGPTSpec(), *,
                   tokenizer_texts: Sequence[str] | None = None, card: str | None = None) -> Path:
    """Train a tiny GPT-2 on `texts` (the tokenizer on `tokenizer_texts` or the same texts) and
    save it as a Hugging Face model folder at `folder`. `spec.steps == 0` gives the random init."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    random.seed(spec.seed)
    torch.manual_seed(spec.seed)
    tokenizer = train_tokenizer(tokenizer_texts or texts, spec.vocab_size)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=spec.n_positions,
                        n_embd=spec.n_embd, n_layer=spec.n_layer, n_head=spec.n_head,
                        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.eos_token_id, resid_pdrop=0.0, embd_pdrop=0.0,
                        attn_pdrop=0.0)
    model = GPT2LMHeadModel(config)
    return _train_and_save(model, tokenizer, texts, spec, folder, card)


def _train_and_save(model, tokenizer, texts: Sequence[str], spec: TinyGPTSpec, folder,
                    card: str | None) -> Path:
    """Train (unless spec.steps is 0) and write a Hugging Face folder, replacing any old one."""
    if spec.steps:
        _train(model, tokenizer, texts, spec)
    model.eval()
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    (folder / "README.md").write_text(card or _card(spec, len(texts)))
    return folder


def _train(model, tokenizer, texts: Sequence[str], spec: TinyGPTSpec) -> None:
    import torch

    ids: list[int] = []
    for text in texts:
        ids.extend(tokenizer(text)["input_ids"])
        ids.append(tokenizer.eos_token_id)
    seq = min(spec.seq_len, spec.n_positions)
    if len(ids) < seq + 1:
        ids = ids * ((seq + 1) // max(len(ids), 1) + 1)
    data = torch.tensor(ids, dtype=torch.long)
    generator = torch.Generator().manual_seed(spec.seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=spec.learning_rate, weight_decay=0.0)
    threads = torch.get_num_threads()
    torch.set_num_threads(min(threads, int(os.environ.get("STAGEGATE_TRAIN_THREADS", "2"))))
    try:
        model.train()
        for step in range(spec.steps):
            starts = torch.randint(0, len(data) - seq, (spec.batch_size,), generator=generator)
            batch = torch.stack([data[s:s + seq] for s in starts.tolist()])
            # Linear warm-down keeps tiny models from oscillating at the end.
            for group in optimiser.param_groups:
                group["lr"] = spec.learning_rate * (1 - step / spec.steps)
            loss = model(input_ids=batch, labels=batch).loss
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
    finally:
        torch.set_num_threads(threads)


def _card(spec: TinyGPTSpec, n_texts: int) -> str:
    return (f"---\nlicense: apache-2.0\nlibrary_name: transformers\npipeline_tag: text-generation\n---\n"
            f"# Tiny GPT-2\n\nA {spec.n_layer}-layer, {spec.n_embd}-wide GPT-2 trained for "
            f"{spec.steps} steps on {n_texts} short texts, made on the spot by Stagegate.\n")


def finetune_tiny_gpt(folder: Path, base: Path, texts: Sequence[str],
                      spec: TinyGPTSpec = TinyGPTSpec(), *, card: str | None = None) -> Path:
    """Continue training the model folder `base` on `texts` for spec.steps steps (its own
    tokenizer and architecture; spec's shape fields are ignored) and save it at `folder`.
    Lets a family of test models share one pre-training and differ only in what follows."""
    import torch
    from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    random.seed(spec.seed)
    torch.manual_seed(spec.seed)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(base, local_files_only=True)
    model = GPT2LMHeadModel.from_pretrained(base, local_files_only=True, use_safetensors=True)
    return _train_and_save(model, tokenizer, texts, spec, folder, card)


def _cached(folder: Path, build) -> Path:
    """Build into a private staging folder, then rename into place: concurrent builders of the
    same key never see a half-written folder, and the loser's identical result is dropped."""
    if is_cached(folder):
        return folder
    staging = folder.parent / f".building-{folder.name}-{os.getpid()}"
    build(staging)
    try:
        staging.rename(folder)
    except OSError:  # another process finished first; its result is identical
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def tiny_gpt_folder(cache_dir: Path, texts: Sequence[str], spec: TinyGPTSpec = TinyGPTSpec(),
                    *, tokenizer_texts: Sequence[str] | None = None) -> Path:
    """Where cached_tiny_gpt keeps (or will keep) the model for these inputs."""
    return Path(cache_dir) / f"tinygpt-{spec.cache_key(texts, tokenizer_texts)}"


def finetuned_folder(cache_dir: Path, base: Path, texts: Sequence[str],
                     spec: TinyGPTSpec = TinyGPTSpec()) -> Path:
    """Where cached_finetuned_tiny_gpt keeps the model; the base must exist (its weights are
    part of the key)."""
    base_hash = hashlib.sha256((Path(base) / "model.safetensors").read_bytes()).hexdigest()
    key = hashlib.sha256((base_hash + spec.cache_key(texts)).encode()).hexdigest()[:24]
    return Path(cache_dir) / f"tinygpt-ft-{key}"


def is_cached(folder: Path) -> bool:
    return (Path(folder) / "model.safetensors").exists()


def cached_tiny_gpt(cache_dir: Path, texts: Sequence[str], spec: TinyGPTSpec = TinyGPTSpec(),
                    *, tokenizer_texts: Sequence[str] | None = None) -> Path:
    """build_tiny_gpt, cached by the content hash of its inputs (safe across processes)."""
    folder = tiny_gpt_folder(cache_dir, texts, spec, tokenizer_texts=tokenizer_texts)
    return _cached(folder, lambda staging: build_tiny_gpt(staging, texts, spec,
                                                          tokenizer_texts=tokenizer_texts))


def cached_finetuned_tiny_gpt(cache_dir: Path, base: Path, texts: Sequence[str],
                              spec: TinyGPTSpec = TinyGPTSpec()) -> Path:
    """finetune_tiny_gpt, cached by the base's weights hash and the fine-tuning inputs."""
    folder = finetuned_folder(cache_dir, base, texts, spec)
    return _cached(folder, lambda staging: finetune_tiny_gpt(staging, base, texts, spec))
