"""Pausing Python's cyclic garbage collector while large object trees are built."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while building large object trees.

    The AST and the IR are trees of many small objects without cycles worth
    collecting. On large projects the collector's passes over them cost about
    a third of a check and most of lowering (measured with bench/check_bench.py
    and bench/compile_bench.py).
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()
