"""The linear head's CPU fit (SciPy L-BFGS-B on the L2-regularised softmax / sigmoid objective), run in a helper
process that uses one BLAS thread.

Why a process: on a busy machine OpenBLAS's worker threads spin-wait, and a 1,000-label fit that takes 0.5 s with one
BLAS thread took 3.7 s (quiet 2-core machine) to 50 s (tests running beside it) with OpenBLAS's default threads
(``bench/bench_blas_threads.py``, raw JSON in ``bench/results/``). Limiting the threads inside the kernel would change
a process-wide setting that the user's own code and scikit-learn's ``threadpool_limits`` (KMeans in the selection)
also change; toggling it from the training thread raced with them and made OpenBLAS print "Detect OpenMP Loop and
this application may hang". The helper process is ours alone: its one-thread setting touches nothing in the kernel.

One helper process per kernel (spawned on the first fit, reused, gone with the kernel); fits queue on it. The inputs
are small (labelled rows only: 1,000 x 1,024 float32 is 4 MB). If the helper cannot be started or dies twice in a
row, the fit runs in the kernel's own thread and a warning says so once (``where`` tells the caller which ran).

Importable without torch: only NumPy and SciPy.
"""
from __future__ import annotations

import os
import threading
import warnings
from typing import Optional

import numpy as np

#: threads the helper process gives BLAS (``ALWB_FIT_BLAS_THREADS`` overrides; 1 is fastest on a shared machine)
BLAS_THREADS = 1
#: how much lower the helper's CPU priority is than the kernel's (``ALWB_FIT_NICE`` overrides; 0 keeps it equal):
#: on a busy machine the labeller's next image (the kernel, the browser) gets the CPU before the model's fit
NICE = 10
#: L-BFGS memory (SciPy's maxcor; its default: 20 took more time per iteration than it saved in iterations)
MAXCOR = 10

_lock = threading.Lock()
_pool = None
_pool_pid: Optional[int] = None
_warned = False


def lbfgs_fit(Xs: np.ndarray, target: np.ndarray, k: int, multilabel: bool, class_weights: np.ndarray,
              C: float, w0: np.ndarray, max_iter: int, tol: float) -> dict:
    """Minimise ``mean weighted loss + ||W||^2 / (2 C n)`` from ``w0`` (flat ``[W.ravel(), b]``); the same objective
    as the head's torch L-BFGS and scikit-learn's LogisticRegression. Returns W, b, iterations and final loss."""
    from scipy.optimize import minimize
    from scipy.special import expit, log_expit

    n, d = Xs.shape
    cw = np.asarray(class_weights, dtype=np.float32)
    l2 = 1.0 / (float(C) * n)
    rows = np.arange(n)
    if multilabel:
        Yt = target.astype(np.float32)
    else:
        Yt = np.zeros((n, k), dtype=np.float32)
        Yt[rows, target] = 1.0
        sw = cw[target]
        swn = (sw / float(sw.sum())).astype(np.float32)

    def fg(w):
        W = w[:k * d].reshape(k, d).astype(np.float32)
        b = w[k * d:].astype(np.float32)
        Z = Xs @ W.T + b
        if multilabel:
            # BCEWithLogits(pos_weight) averaged over n*k entries
            loss = -(cw * Yt * log_expit(Z) + (1 - Yt) * log_expit(-Z)).mean()
            S = expit(Z)
            G = ((1 - Yt) * S - cw * Yt * (1 - S)) / (n * k)
        else:
            # log-sum-exp by hand: one exp serves the loss and the gradient (scipy's logsumexp costs more than the
            # products at this size)
            m = Z.max(axis=1, keepdims=True)
            E = np.exp(Z - m)
            s = E.sum(axis=1, keepdims=True)
            lse = m[:, 0] + np.log(s[:, 0])
            loss = float(swn @ (lse - Z[rows, target]))
            G = (E / s - Yt) * swn[:, None]
        loss = float(loss) + 0.5 * l2 * float((W * W).sum())
        gW = G.T @ Xs + l2 * W
        return loss, np.concatenate([gW.ravel(), G.sum(axis=0)]).astype(np.float64)

    res = minimize(fg, np.asarray(w0, dtype=np.float64), jac=True, method="L-BFGS-B",
                   options={"maxiter": int(max_iter), "gtol": float(tol), "maxcor": MAXCOR})
    return {"W": res.x[:k * d].reshape(k, d).astype(np.float32), "b": res.x[k * d:].astype(np.float32),
            "nit": int(res.nit), "fun": float(res.fun)}


class _Helper:
    """A child Python running this file as a script (``--serve FD``): it imports NumPy and SciPy only, never the
    caller's ``__main__`` (multiprocessing's spawn would re-run a script that lacks an ``if __name__`` guard), and it
    ends when its socket closes, so it goes with the kernel."""

    def __init__(self, threads: int):
        import socket
        import subprocess
        import sys
        from multiprocessing.connection import Connection

        parent, child = socket.socketpair()
        env = dict(os.environ)
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
            env[var] = str(threads)
        try:
            self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", str(child.fileno())],
                                         pass_fds=(child.fileno(),), env=env, stdin=subprocess.DEVNULL,
                                         close_fds=True)
        finally:
            child.close()
        self.conn = Connection(parent.detach())

    def call(self, kw: dict) -> dict:
        self.conn.send(kw)
        ok, value = self.conn.recv()
        if not ok:
            raise value
        return value

    def close(self) -> None:
        try:
            self.conn.close()
        finally:
            try:
                self.proc.wait(timeout=5)
            except Exception:  # noqa: BLE001 - a helper that does not end is killed
                self.proc.kill()


def _serve(fd: int) -> None:
    from multiprocessing.connection import Connection
    try:
        os.nice(max(0, int(os.environ.get("ALWB_FIT_NICE", NICE))))
    except (OSError, ValueError):   # a refused or malformed setting: the fit runs at the kernel's priority
        pass
    conn = Connection(fd)
    while True:
        try:
            kw = conn.recv()
        except (EOFError, OSError):
            return
        try:
            out = (True, lbfgs_fit(**kw))
        except Exception as e:  # noqa: BLE001 - handed back to the caller, raised there
            out = (False, e)
        conn.send(out)


def _helper_threads() -> int:
    try:
        return max(1, int(os.environ.get("ALWB_FIT_BLAS_THREADS", BLAS_THREADS)))
    except ValueError:
        raise ValueError(f"ALWB_FIT_BLAS_THREADS must be a positive integer, "
                         f"got {os.environ['ALWB_FIT_BLAS_THREADS']!r}") from None


def _get_helper() -> "_Helper":
    global _pool, _pool_pid
    if _pool is None or _pool_pid != os.getpid() or _pool.proc.poll() is not None:
        _drop_helper()
        _pool = _Helper(_helper_threads())
        _pool_pid = os.getpid()
    return _pool


def _drop_helper() -> None:
    global _pool
    helper, _pool = _pool, None
    if helper is not None and _pool_pid == os.getpid():
        try:
            helper.close()
        except Exception:  # noqa: BLE001 - a broken helper may fail to close; it is dropped either way
            pass


def shutdown() -> None:
    """Stop the helper process (it also ends with the kernel)."""
    with _lock:
        _drop_helper()


def helper_pid() -> Optional[int]:
    """The helper process's PID once it runs (for tests and diagnostics), else None."""
    helper = _pool
    return None if helper is None else helper.proc.pid


def fit(Xs: np.ndarray, target: np.ndarray, k: int, *, in_process: bool = True, **kw) -> tuple[dict, str]:
    """Run :func:`lbfgs_fit` in the helper process (``in_process=True``) or in the calling thread. Returns the result
    and where it ran ("helper process" or "kernel thread"). An error inside the fit is raised here as it was raised
    there; a helper that died (killed from outside) is replaced once."""
    global _warned
    kw = dict(kw, Xs=np.ascontiguousarray(Xs, dtype=np.float32), target=target, k=int(k))
    if in_process:
        last: Optional[BaseException] = None
        for _ in range(2):
            with _lock:  # one request at a time on the one helper
                try:
                    helper = _get_helper()
                    return helper.call(kw), "helper process"
                except (EOFError, OSError, ConnectionError) as e:
                    last = e
                    _drop_helper()
        if not _warned:
            _warned = True
            warnings.warn(f"alworkbench: the fit helper process could not run ({type(last).__name__}: {last}); "
                          "fitting in the kernel's own thread instead (slower on a busy machine)",
                          RuntimeWarning, stacklevel=3)
    return lbfgs_fit(**kw), "kernel thread"


if __name__ == "__main__" and len(__import__("sys").argv) == 3 and __import__("sys").argv[1] == "--serve":
    _serve(int(__import__("sys").argv[2]))
