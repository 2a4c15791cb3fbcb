"""Kept for imports only: alworkbench no longer changes torch's thread count.

``one_thread`` used to call ``torch.set_num_threads(1)`` around small-op work, guarded by a process-wide counter;
that changed the setting for every other thread and library in the kernel (issue 9, finding 8). The number of
CPU threads torch uses is the user's setting (``torch.set_num_threads``, ``OMP_NUM_THREADS``); on a busy machine
set it yourself. ``one_thread`` is now a context manager that changes nothing.
"""
from __future__ import annotations

import contextlib


@contextlib.contextmanager
def one_thread(enabled: bool = True):
    yield
