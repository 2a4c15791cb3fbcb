"""Issue 13, part 3: embedding on Ray Data against a real local Ray cluster on 127.0.0.1 (one per test module, 2
CPUs, a small object store, stopped at the end). Same rows and cache keys as the local path, the same commit
markers, unreadable images skipped with the same reasons, a killed run resumed with only the missing rows."""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import psutil  # noqa: E402 - required (setup installs the ray extra): a missing package fails, never skips
import ray  # noqa: E402
import torch  # noqa: E402,F401

from PIL import Image  # noqa: E402

from alworkbench.data import ImageSource  # noqa: E402
from alworkbench.data.fixtures import make_messy_folder  # noqa: E402
from alworkbench.embed import EmbeddingCache, embed_source, get_backbone  # noqa: E402
from alworkbench.embed.ray_embed import connect, embed_source_ray  # noqa: E402
from alworkbench.types import Item  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SPEC = ("randconv", "default", "cpu")


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster on 127.0.0.1 started by this process through the code under test (2 CPUs, 300 MB object
    store); its address (127.0.0.1:PORT) lets other processes join it as drivers."""
    _DRIVER_LISTENING_BEFORE.update(_listening([psutil.Process()]))
    connect(None, num_cpus=2, object_store_memory=300 * 2**20)
    address = ray.get_runtime_context().gcs_address
    yield address
    ray.shutdown()


_DRIVER_LISTENING_BEFORE: set = set()  # this process's listening sockets before it started Ray (other tests' own)


def _listening(procs) -> set:
    out = set()
    for proc in procs:
        try:
            conns = proc.net_connections(kind="inet")
            name = proc.name()
        except psutil.NoSuchProcess:
            continue
        out |= {(c.laddr.ip, c.laddr.port, name) for c in conns if c.status == psutil.CONN_LISTEN}
    return out


def _ray_processes() -> list:
    """Ray's processes under this one (GCS, raylet, agents, workers), not other tests' servers."""
    out = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if "ray" in " ".join(proc.cmdline()).lower():
                out.append(proc)
        except psutil.NoSuchProcess:
            continue
    return out


def test_the_local_cluster_is_on_127_0_0_1_only(cluster):
    assert cluster.startswith("127.0.0.1:")
    nodes = ray.nodes()
    assert nodes and all(n["NodeManagerAddress"] == "127.0.0.1" for n in nodes), nodes

    @ray.remote
    def where():
        return ray.util.get_node_ip_address()

    assert ray.get(where.remote()) == "127.0.0.1"
    # every socket Ray listens on (GCS, raylet, object manager, agents, workers, this driver's core worker) is a
    # loopback one: nothing is reachable from another machine
    socks = _listening(_ray_processes()) | (_listening([psutil.Process()]) - _DRIVER_LISTENING_BEFORE)
    assert int(cluster.rsplit(":", 1)[1]) in {port for _ip, port, _name in socks}
    assert {name for *_, name in socks} >= {"gcs_server", "raylet"}
    assert all(ip in ("127.0.0.1", "::ffff:127.0.0.1") for ip, *_ in socks), sorted(socks)


def _source(root: Path, n: int, seed: int = 0, bad: bool = True) -> ImageSource:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(n):
        p = root / f"i{i:03d}.png"
        Image.fromarray((rng.random((20, 18, 3)) * 255).astype(np.uint8), "RGB").save(p)
        items.append(Item(id=p.name, uri=str(p), sha256=hashlib.sha256(p.read_bytes()).hexdigest()))
    if bad:  # an image that became unreadable after the scan: skipped with a reason, on both paths
        p = root / "broken.png"
        p.write_bytes(b"not an image at all")
        items.append(Item(id=p.name, uri=str(p), sha256=hashlib.sha256(p.read_bytes()).hexdigest()))
        items.append(Item(id="dup.png", uri=str(root / "i000.png"), sha256=items[0].sha256))  # same content
    return ImageSource("t", str(root), items, kind="folder")


def _stored(cache: EmbeddingCache, key: str) -> dict:
    return {s: e for shas, emb in cache.store(key).sources() for s, e in zip(shas.tolist(), np.asarray(emb))}


def test_ray_path_equals_local_path_same_cache(cluster, tmp_path):
    src = _source(tmp_path / "imgs", 30)
    bb = get_backbone(*SPEC[:1], device="cpu")
    with pytest.warns(RuntimeWarning, match="skipped 1 of 32"):
        X_loc, rep_loc = embed_source(src, bb, EmbeddingCache(tmp_path / "local"), batch_size=8, chunk_size=10,
                                      progress=False, return_report=True)
    with pytest.warns(RuntimeWarning, match="skipped 1 of 32"):
        X_ray, rep_ray = embed_source_ray(src, SPEC, EmbeddingCache(tmp_path / "ray"), workers=2, batch_size=8,
                                          chunk_size=10, progress=False, return_report=True)
    np.testing.assert_allclose(X_ray, X_loc, rtol=1e-5, atol=1e-6)
    assert rep_ray.n_computed == rep_loc.n_computed == 30 and rep_ray.n_cached == 0
    assert rep_ray.failed == rep_loc.failed == [("broken.png", rep_loc.failed[0][1])]
    assert rep_ray.ok.tolist() == rep_loc.ok.tolist()
    # the same cache layout: same key folder, same content keys, consolidated with its commit marker
    loc, rc = EmbeddingCache(tmp_path / "local"), EmbeddingCache(tmp_path / "ray")
    assert rc.keys() == loc.keys() == [bb.key]
    assert sorted(p.name for p in (tmp_path / "ray").iterdir()) == sorted(p.name for p in (tmp_path / "local").iterdir())
    folder = rc.folder(bb.key)
    assert len(list(folder.glob("sum-*.json"))) == 1 and not list(folder.glob("chunk-*"))  # consolidated, committed
    a, b = _stored(loc, bb.key), _stored(rc, bb.key)
    assert sorted(a) == sorted(b) and len(a) == 30
    for s in a:
        np.testing.assert_allclose(b[s], a[s], rtol=1e-5, atol=1e-6)
    # a rerun on Ray computes nothing
    with pytest.warns(RuntimeWarning, match="skipped 1 of 32"):
        X2, rep2 = embed_source_ray(src, SPEC, rc, batch_size=8, progress=False, return_report=True)
    assert rep2.n_cached == 31 and rep2.n_computed == 0
    np.testing.assert_array_equal(X2, X_ray)


def test_ray_run_killed_after_two_chunks_resumes_with_only_the_missing_rows(cluster, tmp_path):
    src = _source(tmp_path / "imgs", 40, seed=1, bad=False)
    cache_dir = tmp_path / "cache"
    # a driver in another process joins the cluster and is killed (SIGKILL) right after its 2nd chunk is committed
    code = textwrap.dedent(f"""
        import hashlib, os, signal
        from pathlib import Path
        from alworkbench.data import ImageSource
        from alworkbench.types import Item
        from alworkbench.embed import EmbeddingCache
        from alworkbench.embed.ray_embed import embed_source_ray
        ps = sorted(Path({str(tmp_path / 'imgs')!r}).glob("*.png"))
        items = [Item(id=p.name, uri=str(p), sha256=hashlib.sha256(p.read_bytes()).hexdigest()) for p in ps]
        src = ImageSource("t", {str(tmp_path / 'imgs')!r}, items, kind="folder")
        n = [0]
        def on_chunk(done, todo):
            n[0] += 1
            if n[0] == 2:
                os.kill(os.getpid(), signal.SIGKILL)
        embed_source_ray(src, {SPEC!r}, EmbeddingCache({str(cache_dir)!r}), address={cluster!r}, workers=2,
                         batch_size=4, chunk_size=8, progress=False, on_chunk=on_chunk)
        print("finished without being killed")
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == -signal.SIGKILL, r.stdout + r.stderr
    bb = get_backbone("randconv", device="cpu")
    cache = EmbeddingCache(cache_dir)
    folder = cache.folder(bb.key)
    assert len(list(folder.glob("chunk-*.sum.json"))) == 2 and not list(folder.glob("emb-*.npy"))
    assert cache.count(bb.key) == 16  # the two committed chunks, nothing else
    done = []
    X, rep = embed_source_ray(src, SPEC, cache, workers=2, batch_size=4, chunk_size=8, progress=False,
                              return_report=True, on_chunk=lambda d, t: done.append((d, t)))
    assert rep.n_cached == 16 and rep.n_computed == 24 and not rep.failed
    assert done[-1] == (24, 24)  # only the missing rows were sent to the workers
    np.testing.assert_allclose(X, embed_source(src, bb, None, progress=False), rtol=1e-5, atol=1e-6)
    assert cache.count(bb.key) == 40 and not list(folder.glob("chunk-*"))


def _alwb(*args, env=None):
    return subprocess.run([sys.executable, "-m", "alworkbench.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env=env, cwd=str(REPO))


def test_cli_embed_ray_address_then_local_cluster_then_local_path(cluster, tmp_path):
    info = make_messy_folder(tmp_path / "images", large=False)
    proj = tmp_path / "proj"
    assert _alwb("init", proj, "--images", tmp_path / "images", "--batch-size", 4).returncode == 0
    r = _alwb("embed", proj, "--quiet", "--ray", cluster, "--ray-workers", "2")
    assert r.returncode == 0, r.stderr
    assert f"{info['n_good']} images embedded" in r.stdout and f"on Ray ({cluster})" in r.stdout
    assert f"{info['n_good']} computed, 0 from the cache" in r.stdout
    # the plain local path finds everything in the cache Ray wrote
    r = _alwb("embed", proj, "--quiet")
    assert r.returncode == 0 and f"0 computed, {info['n_good']} from the cache" in r.stdout, r.stdout + r.stderr
    # `--ray` without an address starts (and stops) its own local cluster
    for meta in (proj / "cache").glob("*/meta.json"):
        shutil.rmtree(meta.parent)
    r = _alwb("embed", proj, "--quiet", "--ray")
    assert r.returncode == 0, r.stderr
    assert "on Ray (local cluster)" in r.stdout and f"{info['n_good']} computed, 0 from the cache" in r.stdout


def test_cli_embed_ray_without_ray_names_the_extra(tmp_path):
    code = textwrap.dedent("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] == 'ray': raise ImportError('blocked ' + name)
        sys.meta_path.insert(0, Block())
        from alworkbench.cli import main
        sys.exit(main(sys.argv[1:]))
    """)
    r = subprocess.run([sys.executable, "-c", code, "embed", str(tmp_path / "nowhere"), "--ray"],
                       capture_output=True, text=True, timeout=120, cwd=str(REPO))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0, r.stderr
    assert "pip install 'alworkbench[ray]'" in r.stderr and "--ray" in r.stderr


def test_a_failing_ray_worker_is_one_line_and_nothing_half_written(cluster, tmp_path):
    from alworkbench.errors import AlwbError

    src = _source(tmp_path / "imgs", 6, bad=False)
    cache = EmbeddingCache(tmp_path / "cache")
    # the actors cannot build the backbone (no CUDA here): the driver's one-line error names the worker's reason
    with pytest.raises(AlwbError, match=r"^embedding on Ray failed: .*torch.cuda.is_available\(\) is False; "
                                        r"finished chunks are kept") as exc:
        embed_source_ray(src, ("randconv", "default", "cuda"), cache, workers=1, batch_size=4, progress=False)
    assert "\n" not in str(exc.value)
    assert not [p for p in tmp_path.joinpath("cache").rglob("*") if p.suffix in (".npy", ".tmp")]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _files(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def test_cli_embed_at_an_address_nobody_answers_is_one_line_and_touches_nothing(tmp_path):
    make_messy_folder(tmp_path / "images", large=False)
    proj = tmp_path / "proj"
    assert _alwb("init", proj, "--images", tmp_path / "images", "--batch-size", 4).returncode == 0
    before = _files(proj)
    address = f"127.0.0.1:{_free_port()}"  # a free port: nothing listens there (Ray alone would retry for minutes)
    r = subprocess.run([sys.executable, "-m", "alworkbench.cli", "embed", str(proj), "--quiet", "--ray", address],
                       capture_output=True, text=True, timeout=300, cwd=str(REPO))  # timeout: a liveness bound
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith(f"alwb: error: cannot connect to the Ray cluster at {address}: nothing answers at {address} "
                               "(connection refused"), r.stderr
    assert "ray start --head" in r.stderr and not r.stdout
    assert _files(proj) == before  # no cache folder, no scan index, no store: the project is as it was


def test_ray_addresses_are_parsed_for_the_probe():
    from alworkbench.embed.ray_embed import is_loopback, split_address

    assert split_address("10.0.0.5:6379") == ("10.0.0.5", 6379)
    assert split_address("ray://head.example.org:10001") == ("head.example.org", 10001)
    assert split_address("[::1]:6379") == ("::1", 6379)
    assert split_address("auto") is None and split_address("host") is None
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("10.0.0.5") and not is_loopback("head.example.org")
