"""Freed heap pages go back to the OS where the C library can be asked to (glibc)."""

from __future__ import annotations

import platform

import pytest

from service.engine import heap


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_glibc_is_asked_to_trim() -> None:
    assert heap.trim() is True
