"""A scoped ``torch.set_num_threads(1)`` for work made of many small ops.

For small tensors, intra-op threads cost more than they give, and on a busy machine (more runnable threads than
cores) OpenMP's spin-waiting multiplies CPU time: measured 25 s vs 390 s of CPU for the same 70k-image
``randconv`` pass on a loaded 2-core box. Concurrent users share one setting; the last one out restores it.
"""
from __future__ import annotations

import contextlib
import threading

_LOCK = threading.Lock()
_STATE = {"users": 0, "saved": None}


@contextlib.contextmanager
def one_thread(enabled: bool = True):
    if not enabled:
        yield
        return
    import torch

    with _LOCK:
        if _STATE["users"] == 0:
            _STATE["saved"] = torch.get_num_threads()
            torch.set_num_threads(1)
        _STATE["users"] += 1
    try:
        yield
    finally:
        with _LOCK:
            _STATE["users"] -= 1
            if _STATE["users"] == 0:
                torch.set_num_threads(_STATE["saved"])
