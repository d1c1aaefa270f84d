"""Resource limits for the process that loads a checkpoint's weights to evaluate them."""

from __future__ import annotations

import resource
from contextlib import contextmanager


@contextmanager
def address_space_limit(limit_bytes: int):
    """Cap this process's address space (RLIMIT_AS) while the block runs, then restore it.

    A Celery pool process runs many tasks, so the soft limit is lowered for one eval and raised
    back afterwards (the hard limit is left alone, which is what lets it go back up). A model
    that does not fit then fails its run with a MemoryError instead of taking the machine down.
    """
    if not limit_bytes:
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    capped = limit_bytes if hard == resource.RLIM_INFINITY else min(limit_bytes, hard)
    resource.setrlimit(resource.RLIMIT_AS, (capped, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@contextmanager
def torch_threads(count: int):
    """Let torch use `count` threads while the block runs (0: leave torch's choice)."""
    if not count:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
