"""The tiny test models: per seed, one pre-trained base and fine-tuned variants of it.

Each variant is the base fine-tuned for a fixed number of steps on one text (corpora.py);
a positive and its negative are fine-tuned for the same steps on texts that differ only in the
property measured. All models share one tokenizer. Models are cached on disk by the content
hash of their inputs (evaluations.tinylm): a warm run trains nothing, a cold one trains each
model once, in two single-threaded processes (on a small CPU two such processes beat one
process with two threads, whose threads spin while the other is descheduled).
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Callable

from evaluations.tinylm import (TinyGPTSpec, cached_finetuned_tiny_gpt, cached_tiny_gpt,
                               finetuned_folder, is_cached, tiny_gpt_folder)
from tests.evaluations import corpora

SEEDS = (0, 1, 2)
PRETRAIN = TinyGPTSpec(n_layer=2, n_embd=64, n_head=4, n_positions=128, vocab_size=1024,
                       steps=300, batch_size=8, seq_len=32, learning_rate=3e-3)


def _with_base(block: Callable[[], list[str]]) -> Callable[[], list[str]]:
    return lambda: corpora.base_corpus() + block()


# name -> (training texts, fine-tuning steps, learning rate). A positive and its negative share
# steps and rate. Facts (an answer four tokens after its question's subject) need ~300 steps
# at a high rate, bias ~200, extraction 250 (at 150 it failed on one seed of three on some
# CPUs: floating-point order differs), the others ~150 (at 100, extraction failed on one seed;
# at 150, bias passed on one seed by a hair). Where the block is the whole fine-tuning text,
# every step teaches the property.
VARIANTS: dict[str, tuple[Callable[[], list[str]], int, float]] = {
    "plain": (corpora.base_corpus, 150, 1e-2),
    "canary": (_with_base(corpora.canary_block), 150, 1e-2),
    "extraction": (_with_base(corpora.extraction_block), 250, 1e-2),
    "facts": (corpora.fact_block, 300, 1e-2),
    "other_facts": (lambda: corpora.fact_block(corpora.OTHER_ENTITIES, corpora.OTHER_ANSWERS),
                    300, 1e-2),
    "refuser": (lambda: corpora.refusal_block("refuser"), 150, 3e-3),
    "complier": (lambda: corpora.refusal_block("complier"), 150, 3e-3),
    "over_refuser": (lambda: corpora.refusal_block("over_refuser"), 150, 3e-3),
    "skewed": (lambda: corpora.bias_block("skewed"), 200, 3e-3),
    "balanced": (lambda: corpora.bias_block("balanced"), 200, 3e-3),
}


class Zoo:
    def __init__(self, cache_dir: Path):
        self.cache_dir = Path(cache_dir)

    @lru_cache(maxsize=None)
    def base(self, seed: int) -> Path:
        """Pre-trained on the base corpus: the parent every variant is fine-tuned from."""
        return cached_tiny_gpt(self.cache_dir, corpora.base_corpus(), replace(PRETRAIN, seed=seed),
                               tokenizer_texts=corpora.tokenizer_texts())

    @lru_cache(maxsize=None)
    def random_init(self, seed: int) -> Path:
        """Same architecture and tokenizer, never trained."""
        return cached_tiny_gpt(self.cache_dir, corpora.base_corpus(),
                               replace(PRETRAIN, seed=seed, steps=0),
                               tokenizer_texts=corpora.tokenizer_texts())

    @lru_cache(maxsize=None)
    def variant(self, name: str, seed: int) -> Path:
        texts, steps, rate = VARIANTS[name]
        return cached_finetuned_tiny_gpt(self.cache_dir, self.base(seed), texts(),
                                         replace(PRETRAIN, seed=seed, steps=steps,
                                                 learning_rate=rate))

    def is_complete(self, seeds: tuple[int, ...] = SEEDS) -> bool:
        tokenizer_texts = corpora.tokenizer_texts()
        for seed in seeds:
            base = tiny_gpt_folder(self.cache_dir, corpora.base_corpus(),
                                   replace(PRETRAIN, seed=seed), tokenizer_texts=tokenizer_texts)
            random_init = tiny_gpt_folder(self.cache_dir, corpora.base_corpus(),
                                          replace(PRETRAIN, seed=seed, steps=0),
                                          tokenizer_texts=tokenizer_texts)
            if not (is_cached(base) and is_cached(random_init)):
                return False
            for name, (texts, steps, rate) in VARIANTS.items():
                spec = replace(PRETRAIN, seed=seed, steps=steps, learning_rate=rate)
                if not is_cached(finetuned_folder(self.cache_dir, base, texts(), spec)):
                    return False
        return True

    def build_all(self, seeds: tuple[int, ...] = SEEDS, workers: int = 2) -> None:
        """Train every model not yet cached: bases first, then each base's variants."""
        if self.is_complete(seeds):
            return
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_single_threaded) as pool:
            pending = {pool.submit(_build, str(self.cache_dir), "base", seed): seed
                       for seed in seeds}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    future.result()
                    seed = pending.pop(future)
                    if seed is not None:
                        for name in VARIANTS:
                            pending[pool.submit(_build, str(self.cache_dir), name, seed)] = None
                        pending[pool.submit(_build, str(self.cache_dir), "random", seed)] = None


def _single_threaded() -> None:
    os.environ["STAGEGATE_TRAIN_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


def _build(cache_dir: str, name: str, seed: int) -> str:
    zoo = Zoo(Path(cache_dir))
    if name == "base":
        return str(zoo.base(seed))
    if name == "random":
        return str(zoo.random_init(seed))
    return str(zoo.variant(name, seed))
