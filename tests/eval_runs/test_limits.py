"""The address-space cap a worker process runs each eval under."""

from __future__ import annotations

import resource

import pytest

from evaluations.limits import address_space_limit


def current_address_space() -> int:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[0])
    return pages * resource.getpagesize()


def test_an_eval_that_needs_more_memory_than_allowed_fails_and_the_cap_is_lifted_after():
    before = resource.getrlimit(resource.RLIMIT_AS)
    with pytest.raises(MemoryError):
        with address_space_limit(current_address_space() + 64 * 1024**2):
            bytearray(512 * 1024**2)
    assert resource.getrlimit(resource.RLIMIT_AS) == before
    assert len(bytearray(256 * 1024**2)) == 256 * 1024**2


def test_no_limit_means_no_change():
    before = resource.getrlimit(resource.RLIMIT_AS)
    with address_space_limit(0):
        assert resource.getrlimit(resource.RLIMIT_AS) == before
