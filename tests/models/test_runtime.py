"""Process-wide runtime settings: thread caps and returning freed memory."""

from __future__ import annotations

import sys

import pytest

from models.runtime import limit_cpu_threads, release_free_memory


def test_release_free_memory_asks_glibc_on_linux() -> None:
    garbage = [bytes(1000) for _ in range(10_000)]  # ~10 MB freed just before
    del garbage
    assert release_free_memory() is sys.platform.startswith("linux")


def test_thread_cap_must_be_positive() -> None:
    with pytest.raises(ValueError, match=">= 1"):
        limit_cpu_threads(0)
