"""A virtual clock for simulating the asynchronous loop at a person's pace without waiting for it.

The asynchronous loop a person gets (:class:`~alworkbench.loop.session.Session` with ``retrain_async``) depends on
*when* each background fit lands relative to the answers: a model that lands after the third answer of a batch
re-selects the rest of it; one that lands after the tenth re-selects fewer. Run in real time, a simulation has to
sleep through every answer (a person takes about a second per image, so 1,000 labels is 17 minutes per run), or use an
unrealistically fast annotator, and the landing points then depend on how loaded the machine is.

With a :class:`VirtualClock` the session's worker stops at fixed points of each fit (``start``: the labels are read;
``land``: the new model is swapped in; ``reselect``: the re-selection of the open batch is applied; ``calibrated``:
the calibrated probabilities and the skill signal replace the landed ones; ``end``: the worker is free) and waits
until the simulated annotator's virtual time reaches that point. The annotator advances virtual time by its pace
per answer (:meth:`advance`), and lets every worker point that falls inside that interval happen first, in order.
The same session code runs (one worker, snapshots, landing, re-selection, calibration); only the waiting is virtual.

The virtual duration of each step is the real time the worker spent on it (``costs=None``: what the fit costs on
this machine, so the figure is honest about a slow CPU), or a fixed number of virtual seconds per step
(``costs={"land": 0.5, ...}``): then the whole run is deterministic, the same labels chosen by the same model
versions on any machine.
"""
from __future__ import annotations

import math
import threading
import time
from typing import Optional

#: the worker's stop points, in the order a fit reaches them
STEPS = ("start", "land", "reselect", "calibrated", "end")


class VirtualClock:
    """Virtual time shared by one simulated annotator (the driving thread) and one session worker."""

    def __init__(self, costs: Optional[dict] = None, scale: float = 1.0):
        if costs is not None:
            unknown = sorted(set(costs) - set(STEPS))
            if unknown:
                raise ValueError(f"VirtualClock costs: unknown step(s) {', '.join(unknown)}; steps are "
                                 f"{', '.join(STEPS)}")
            if any(float(v) < 0 for v in costs.values()):
                raise ValueError("VirtualClock costs must be >= 0 virtual seconds")
        if not scale > 0:
            raise ValueError(f"VirtualClock scale must be > 0, got {scale!r}")
        self.costs = None if costs is None else {k: float(v) for k, v in costs.items()}
        self.scale = float(scale)
        self.now = 0.0  # the annotator's virtual time
        self._cv = threading.Condition()
        self._outstanding = 0  # fits requested and not yet at their ``end`` point
        self._posted: Optional[tuple[float, str]] = None  # a worker point waiting for virtual time to reach it
        self._busy_until = 0.0  # virtual time the worker became free
        self._job_vt = 0.0
        self._real_last = 0.0
        self.events: list[tuple[float, str]] = []  # (virtual time, step) of every worker point passed

    # ------------------------------------------------------------------ annotator side
    def request(self) -> float:
        """A fit was submitted to the worker now; returns the virtual time of the request."""
        with self._cv:
            self._outstanding += 1
            return self.now

    def advance(self, dt: float) -> None:
        """Let ``dt`` virtual seconds pass (one answer's worth): every worker point that falls before ``now + dt``
        happens first, in order; the caller waits (in real time) while the worker computes the next one."""
        if dt < 0:
            raise ValueError("advance: dt must be >= 0")
        self._run_until(self.now + dt)

    def drain(self) -> None:
        """Let every requested fit run to its end (for ``Session.wait``/``retrain`` under a virtual clock)."""
        self._run_until(math.inf)

    def _run_until(self, target: float) -> None:
        with self._cv:
            while True:
                self._cv.wait_for(lambda: self._posted is not None or self._outstanding == 0)
                if self._posted is None:  # the worker is idle
                    break
                vt, step = self._posted
                if vt > target:
                    break
                self.now = max(self.now, vt)
                self.events.append((vt, step))
                self._posted = None  # release the worker; the loop then waits for its next point or its end
                self._cv.notify_all()
            if math.isfinite(target):
                self.now = max(self.now, target)

    # ------------------------------------------------------------------ worker side
    def begin(self, requested_at: float) -> None:
        """The worker starts a fit requested at virtual time ``requested_at`` (it starts when the worker is free)."""
        with self._cv:
            self._job_vt = max(float(requested_at), self._busy_until)
        self._real_last = time.perf_counter()
        self._stop("start", 0.0)

    def checkpoint(self, step: str) -> None:
        """The worker reached ``step``: it waits until virtual time reaches the step's virtual time."""
        if step not in STEPS:
            raise ValueError(f"unknown clock step {step!r}")
        if self.costs is not None:
            cost = self.costs.get(step, 0.0)
        else:
            cost = (time.perf_counter() - self._real_last) * self.scale
        self._stop(step, cost)

    def end(self) -> None:
        """The fit is over (also after an early return or an error): the worker is free at this virtual time."""
        self.checkpoint("end")
        with self._cv:
            self._busy_until = self._job_vt
            self._outstanding -= 1
            self._cv.notify_all()

    def _stop(self, step: str, cost: float) -> None:
        with self._cv:
            self._job_vt += cost
            self._posted = (self._job_vt, step)
            self._cv.notify_all()
            self._cv.wait_for(lambda: self._posted is None)
        self._real_last = time.perf_counter()  # time spent waiting for the annotator is not the worker's

    def __repr__(self) -> str:
        return f"VirtualClock(now={self.now:.3f}, outstanding={self._outstanding}, costs={self.costs})"
