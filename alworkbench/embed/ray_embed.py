"""Embedding on Ray Data: the same cache, the same commit markers, many workers (issue 13, part 3).

``embed_source_ray(source, (name, weights, device), cache, address=...)`` looks the images up in the
:class:`~alworkbench.embed.cache.EmbeddingCache` on the driver, builds a Ray dataset over the rows whose content
is *not* cached yet (so a rerun after an interruption computes only what is missing) and maps it with
``map_batches`` through an actor pool: each actor builds the backbone once, reads its batch's images in parallel
threads (``source.load`` + ``backbone.transform``, or the ``.pixels`` fast path of built-in datasets; exactly the
local path's preprocessing) and runs the forward pass. There is one actor per GPU when the cluster has GPUs
(``num_gpus=1`` each), else one per CPU worker. Results stream back to the driver, which is the only writer:
every ``chunk_size`` rows become one chunk through ``EmbeddingCache.put`` (checksums written last: the commit
marker), and ``consolidate`` runs at the end, exactly as in :func:`~alworkbench.embed.cache.embed_source`.
Images that cannot be read are skipped with a reason, as on the local path.

``import alworkbench.embed.ray_embed`` does not import ray; without it, :func:`import_ray` raises a one-line
:class:`~alworkbench.errors.MissingDependencyError` naming the extra (``pip install 'alworkbench[ray]'``).
"""
from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import time
from typing import Callable, Optional, Sequence

import numpy as np

from ..errors import AlwbError, MissingDependencyError
from .cache import (EmbedReport, EmbeddingCache, _LOAD_ERRORS, fill_duplicates, finish_report, load_bound,
                    plan_rows)

#: every actor seeds torch with this before building its backbone, so random-init weights agree across actors
RANDOM_INIT_SEED = 0


def import_ray():
    """``ray`` (with Ray Data), or a one-line error naming the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError("ray[data]", "ray", "`--ray` (embedding on Ray Data)") from exc
    return ray


#: seconds ``--ray ADDRESS`` waits for the address to accept a connection before it gives up with one line (Ray
#: itself retries an unreachable cluster for many minutes)
PROBE_TIMEOUT_S = 10.0
#: Ray's switch for multi-machine clusters (off by default only on macOS and Windows); off, Ray keeps 127.0.0.1
_CLUSTERS_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def split_address(address: str) -> Optional[tuple[str, int]]:
    """``(host, port)`` of ``"host:port"``, ``"ray://host:port"`` or ``"[::1]:port"``; None when there is none."""
    rest = address.split("://", 1)[1] if "://" in address else address
    rest = rest.split("/", 1)[0]
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def _on_loopback():
    """Keep Ray on 127.0.0.1 while a local cluster starts (or a driver joins one on 127.0.0.1).

    Ray replaces 127.0.0.1 and localhost by the machine's network address everywhere (``node-ip-address``,
    ``_node_ip_address``, the address to join: ``ray._private.services.resolve_ip_for_localhost``) and then
    listens on every interface, unless its multi-machine switch is off (``ray_constants.ENABLE_RAY_CLUSTER``,
    read from ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER``; the default on macOS and Windows). With it off, the node's
    address, the GCS, the raylet and the workers are all 127.0.0.1. The switch is set in this process and in the
    environment the cluster's processes inherit while it starts, then put back: a later connection to a remote
    cluster from this process is unaffected."""
    from ray._private import ray_constants  # no public API for it (ray 2.60); the loopback test checks it works

    old_env, old_const = os.environ.get(_CLUSTERS_ENV), getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    os.environ[_CLUSTERS_ENV] = "0"
    if old_const is not None:  # read once, when ray was imported: this process sees the change only here
        ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if old_const is not None:
            ray_constants.ENABLE_RAY_CLUSTER = old_const
        if old_env is None:
            os.environ.pop(_CLUSTERS_ENV, None)
        else:
            os.environ[_CLUSTERS_ENV] = old_env


def _probe(address: str, host: str, port: int, timeout_s: float) -> None:
    """One line, within ``timeout_s``, when nothing accepts a connection at ``host:port`` (Ray would retry for
    many minutes, printing a warning every few seconds)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        why = "timed out" if isinstance(exc, socket.timeout) else (exc.strerror or type(exc).__name__).lower()
        raise AlwbError(f"cannot connect to the Ray cluster at {address}: nothing answers at {host}:{port} "
                        f"({why} after at most {timeout_s:g} s); start it (`ray start --head`) or fix the address"
                        ) from None


def connect(address: Optional[str] = None, num_cpus: Optional[int] = None,
            object_store_memory: Optional[int] = None, progress: bool = False,
            probe_timeout_s: float = PROBE_TIMEOUT_S):
    """Connect to Ray: ``address`` (``"ray://host:port"``, ``"host:port"`` or ``"auto"``) or, without one, a
    local cluster on this machine started by this process (``num_cpus``, ``object_store_memory`` bytes), stopped
    when the process exits. The local cluster is on 127.0.0.1 only (every node, the GCS, the raylet and the
    workers: see :func:`_on_loopback`); so is a driver that joins a cluster at a loopback address. An address
    where nothing accepts a connection within ``probe_timeout_s`` is a one-line :class:`AlwbError`. A process
    already connected keeps its connection. Returns the ``ray`` module."""
    ray = import_ray()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return ray
    kw = dict(include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    # workers must import the same alworkbench as the driver (a source checkout on PYTHONPATH included)
    pkg_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    pypath = os.pathsep.join(p for p in (pkg_root, os.environ.get("PYTHONPATH", "")) if p)
    where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
    try:
        if address:
            target = address
            if address == "auto":  # RAY_ADDRESS, else the cluster last started on this machine
                try:
                    from ray._private.services import get_ray_address_from_environment
                except ImportError:  # another Ray: let ray.init resolve it
                    get_ray_address_from_environment = None
                if get_ray_address_from_environment is not None:
                    target = get_ray_address_from_environment("auto", None) or address
            hp = split_address(target)
            if hp is not None:
                _probe(address, *hp, probe_timeout_s)
            local = hp is not None and is_loopback(hp[0])
            with _on_loopback() if local else contextlib.nullcontext():
                ray.init(address=target, runtime_env={"env_vars": {"PYTHONPATH": pypath}}, **kw)
        else:
            os.environ["PYTHONPATH"] = pypath  # the local cluster's workers inherit it
            with _on_loopback():
                ray.init(address="local", num_cpus=num_cpus, object_store_memory=object_store_memory,
                         _node_ip_address="127.0.0.1", **kw)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise AlwbError(f"cannot connect to {where}: {' '.join(str(exc).split())[:200]}") from None
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = bool(progress)
    ctx.print_on_execution_start = False
    return ray


def _worker_plan(ray, workers: Optional[int]) -> tuple[int, float, float]:
    """``(actors, num_gpus, num_cpus)`` per actor: one per GPU when the cluster has GPUs, else one per CPU."""
    res = ray.cluster_resources()
    gpus = int(res.get("GPU", 0))
    if gpus:
        return (min(workers, gpus) if workers else gpus), 1.0, 1.0
    cpus = max(1, int(res.get("CPU", 1)))
    return (min(workers, cpus) if workers else cpus), 0.0, 1.0


class _EmbedActor:
    """One backbone per actor (built once); ``__call__`` embeds a batch of source rows."""

    def __init__(self, source_box, spec, io_threads: int = 4):
        import ray

        from .backbones import get_backbone

        src = source_box[0]
        self.source = ray.get(src) if isinstance(src, ray.ObjectRef) else src
        name, weights, device = spec[:3]
        import torch

        # random-init weights (weights="none", tests and benchmarks) must be the same model in every actor
        torch.manual_seed(RANDOM_INIT_SEED)
        self.backbone = get_backbone(name, weights=weights, device=device)
        self.bound = load_bound(self.backbone)
        self.pixels = getattr(self.source, "pixels", None) if spec_uses_pixels(spec) else None
        self.io_threads = io_threads
        self._pool = None

    def _read(self, row: int):
        item = self.source.items[row]
        try:
            im = self.source.load(item, bound=self.bound) if self.bound else self.source.load(item)
            if im.mode != "RGB":
                im = im.convert("RGB")
            return self.backbone.transform(im), ""
        except _LOAD_ERRORS as exc:
            from ..errors import ImageLoadError

            return None, (exc.reason if isinstance(exc, ImageLoadError) else f"{type(exc).__name__}: {exc}")

    def __call__(self, batch: dict) -> dict:
        import torch

        rows = np.asarray(batch["row"], dtype=np.int64)
        dim = self.backbone.dim
        emb = np.zeros((len(rows), dim), dtype=np.float32)
        errors = np.array([""] * len(rows), dtype=object)
        if self.pixels is not None:
            if len(rows):
                emb[:] = self.backbone.forward(self.backbone.transform_uint8_batch(np.asarray(self.pixels[rows])))
        else:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(self.io_threads)
            read = list(self._pool.map(self._read, rows.tolist()))
            ok = [i for i, (t, _why) in enumerate(read) if t is not None]
            for i, (_t, why) in enumerate(read):
                errors[i] = why
            if ok:
                emb[ok] = self.backbone.forward(torch.stack([read[i][0] for i in ok]))
        return {"row": rows, "emb": emb, "error": errors.astype(str)}


def spec_uses_pixels(spec) -> bool:
    return len(spec) < 4 or bool(spec[3])


def embed_source_ray(source, spec: Sequence, cache: Optional[EmbeddingCache], address: Optional[str] = None,
                     workers: Optional[int] = None, batch_size: int = 64, chunk_size: int = 2048,
                     progress: bool = True, on_chunk: Optional[Callable[[int, int], None]] = None,
                     return_report: bool = False, num_cpus: Optional[int] = None,
                     object_store_memory: Optional[int] = None, io_threads: int = 4):
    """Like :func:`~alworkbench.embed.cache.embed_source` (same rows, same cache, same report), computed on Ray.

    ``spec``: ``(backbone name, weights, device[, use_pixels])`` -- each actor builds its own backbone from it.
    ``address``: a Ray cluster (``ray.init(address=...)``); None starts a local one on this machine (``num_cpus``,
    ``object_store_memory``) unless this process is connected already. ``workers``: actors (default: one per
    GPU, else one per CPU of the cluster).
    """
    from .backbones import get_backbone

    t0 = time.perf_counter()
    ray = connect(address, num_cpus=num_cpus, object_store_memory=object_store_memory, progress=progress)
    spec = tuple(spec) if len(spec) >= 4 else (*tuple(spec), True)
    name, weights, device = spec[:3]
    bb = get_backbone(name, weights=weights, device="cpu")  # key and dim only (the key has no device in it)
    key, dim = bb.key, bb.dim
    del bb
    items = source.items
    n = len(items)
    shas = [it.sha256 for it in items]
    report = EmbedReport(n_items=n)
    X, found, todo, first_of = plan_rows(cache, key, shas, dim)
    report.n_cached = int(found.sum())

    failed_rows: dict[int, str] = {}
    if todo:
        import ray.data

        n_actors, gpus, cpus = _worker_plan(ray, workers)
        use_pixels = spec_uses_pixels(spec) and getattr(source, "pixels", None) is not None
        src_ref = ray.put(source)
        todo_a = np.asarray(todo, dtype=np.int64)
        blocks = [todo_a[s:s + batch_size] for s in range(0, len(todo_a), batch_size)]
        n_actors = max(1, min(n_actors, len(blocks)))  # no idle actor (each one loads the backbone)
        ds = ray.data.from_numpy(blocks).rename_columns({"data": "row"})  # one block per batch
        ds = ds.map_batches(_EmbedActor, batch_size=batch_size, batch_format="numpy",
                            compute=ray.data.ActorPoolStrategy(size=n_actors),
                            num_gpus=gpus or None, num_cpus=cpus,
                            fn_constructor_kwargs={"source_box": [src_ref], "spec": (*spec[:3], use_pixels),
                                                   "io_threads": io_threads})
        buf_rows: list[np.ndarray] = []
        buf_emb: list[np.ndarray] = []
        n_buf = 0
        done = 0

        def flush():
            nonlocal buf_rows, buf_emb, n_buf
            if not n_buf:
                return
            rows = np.concatenate(buf_rows)
            emb = np.concatenate(buf_emb)
            X[rows] = emb
            if cache is not None:
                cache.put(key, [shas[r] for r in rows.tolist()], emb)
            buf_rows, buf_emb, n_buf = [], [], 0

        try:
            for out in ds.iter_batches(batch_size=None, batch_format="numpy"):
                rows = np.asarray(out["row"], dtype=np.int64)
                emb = np.asarray(out["emb"], dtype=np.float32).reshape(len(rows), dim)
                errs = [str(e) for e in out["error"]]
                good = np.array([not e for e in errs], dtype=bool)
                for r, e in zip(rows.tolist(), errs):
                    if e:
                        failed_rows[r] = e
                if good.any():
                    buf_rows.append(rows[good])
                    buf_emb.append(emb[good])
                    n_buf += int(good.sum())
                    report.n_computed += int(good.sum())
                done += len(rows)
                if n_buf >= chunk_size:
                    flush()
                    if on_chunk is not None:
                        on_chunk(done, len(todo))
            flush()
            if on_chunk is not None and done and done % chunk_size:
                on_chunk(done, len(todo))
        except ray.exceptions.RayError as exc:  # a worker failed: one line (finished chunks are kept, see below)
            cause = getattr(exc, "cause", None)
            msg = str(cause) if isinstance(cause, AlwbError) else \
                (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:300]
            raise AlwbError(f"embedding on Ray failed: {msg}; finished chunks are kept, rerun to resume") from None
        finally:
            flush()  # keep what was computed, even when interrupted
        if cache is not None:
            cache.consolidate(key)
        fill_duplicates(X, found, shas, first_of, failed_rows)
    finish_report(report, items, failed_rows, n, t0)
    return (X, report) if return_report else X
