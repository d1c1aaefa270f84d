"""Models kept loaded between the evals one worker process runs on them.

Keyed by the checkpoint's manifest digest (and the device and pickle permission it was loaded
with), so a model is only ever reused for the same bytes; bounded to a few models (one by
default), the least recently used dropped first, and dropped before the next one loads, so a
worker never holds more than its bound plus what the running eval holds itself.

Evals share the cached object, so they must not change it: an eval that trains (finetune_attack)
works on its own copy. As a guard against one that forgets, each model's fingerprint (every
parameter's and buffer's storage and in-place version counter, its modules, eval mode) is taken
at load and compared on every reuse: a model that changed is dropped and loaded afresh, so a
later eval never scores with weights another eval altered.

Only models loaded from verified folders go in: the caller puts a model here after the folder
it came from was checked against the manifest whose digest is the key.
"""

from __future__ import annotations

import gc
import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

Loader = Callable[[Path], tuple[object, object]]  # folder -> (model, tokenizer)


def fingerprint(model) -> tuple:
    """What changes when a model's weights, structure or mode change, cheap to take (no pass
    over the weights): in-place writes bump a tensor's version counter, reassigning one changes
    its storage, adapters add modules."""
    tensors = [(name, t.data_ptr(), t._version, tuple(t.shape), t.dtype, t.requires_grad)
               for name, t in [*model.named_parameters(), *model.named_buffers()]]
    modules = [(name, type(module).__name__, module.training)
               for name, module in model.named_modules()]
    return tuple(tensors), tuple(modules)


@dataclass
class _Entry:
    model: object
    tokenizer: object
    fingerprint: tuple


class ModelCache:
    def __init__(self, capacity: int = 1):
        self.capacity = capacity
        self._entries: OrderedDict[tuple, _Entry] = OrderedDict()
        self.loads = 0  # models loaded from disk
        self.hits = 0  # models reused
        self.discarded = 0  # models found changed by an eval and loaded afresh

    def get(self, key: tuple, folder: Path, loader: Loader):
        """(model, tokenizer) for `key`, loading it from `folder` when it is not held (or was
        changed since it was loaded)."""
        if self.capacity <= 0:
            self.loads += 1
            return loader(folder)
        entry = self._entries.get(key)
        if entry is not None:
            if fingerprint(entry.model) == entry.fingerprint:
                self._entries.move_to_end(key)
                self.hits += 1
                return entry.model, entry.tokenizer
            log.warning("a cached model (%s) was changed by an eval; loading it again", key[0][:12])
            self.discarded += 1
            del self._entries[key]
        # Make room first: two large models in memory at once may not fit.
        while len(self._entries) >= self.capacity:
            self._entries.popitem(last=False)
        gc.collect()
        model, tokenizer = loader(folder)
        self.loads += 1
        log.info("loaded model %s for this worker's evals", key[0][:12])
        self._entries[key] = _Entry(model, tokenizer, fingerprint(model))
        return model, tokenizer

    def clear(self) -> None:
        """Drop every model and start counting afresh."""
        self._entries.clear()
        self.loads = self.hits = self.discarded = 0
        gc.collect()

    def __len__(self) -> int:
        return len(self._entries)
