"""Holding Python's cyclic garbage collector off while a large batch is built in memory.

Each pass of the collector scans every object still alive, so while 100,000 jobs pile up it
runs again and again over all of them: a third of the time spent reading a batch, and a good
part of writing one. What a batch builds forms no reference cycles (plain reference counting
frees it all), so the collector can wait until the batch is done.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_holders = 0
_was_enabled = False


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """No cyclic collection inside the block. Nested and concurrent holders (threads of one
    process) are counted: the last one out turns the collector back on, if it was on."""
    global _holders, _was_enabled
    with _lock:
        if _holders == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0 and _was_enabled:
                gc.enable()
