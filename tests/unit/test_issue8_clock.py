"""Issue 8: the asynchronous loop on a virtual clock — a person's pace simulated without sleeping, the session's own
worker stopping at fixed points of each fit until virtual time reaches them. Real digits source, SQLite store."""
import concurrent.futures as cf

import pytest

from alworkbench.errors import ConfigError
from alworkbench.loop.clock import STEPS, VirtualClock
from alworkbench.loop.oracle import Oracle


def _job(clock, requested_at, log, name):
    clock.begin(requested_at)
    log.append(f"{name} started")
    clock.checkpoint("land")
    log.append(f"{name} landed")
    clock.end()


def test_worker_points_happen_in_virtual_order_between_the_answers():
    clock = VirtualClock(costs={"land": 2.5, "end": 0.5})
    log: list[str] = []
    with cf.ThreadPoolExecutor(max_workers=1) as ex:  # one worker, as the session has
        f1 = ex.submit(_job, clock, clock.request(), log, "a")
        clock.advance(1.0)
        # "a" started at 0 and its landing point (2.5) lies beyond 1.0: advance returned only once the worker had
        # reached that point, so the worker is waiting there, not landing
        assert log == ["a started"] and clock.now == 1.0
        f2 = ex.submit(_job, clock, clock.request(), log, "b")  # requested at 1.0 while "a" runs
        clock.advance(1.0)
        assert log == ["a started"] and clock.now == 2.0
        clock.advance(1.0)  # to 3.0: "a" lands at 2.5 and ends at 3.0; "b" starts when the worker is free, at 3.0
        assert log == ["a started", "a landed", "b started"]
        assert clock.events == [(0.0, "start"), (2.5, "land"), (3.0, "end"), (3.0, "start")]
        clock.advance(2.4)
        assert log == ["a started", "a landed", "b started"]
        clock.drain()  # b lands at 5.5, ends at 6.0
        assert log[-1] == "b landed" and clock.events[-2:] == [(5.5, "land"), (6.0, "end")]
        f1.result(5)
        f2.result(5)
    assert clock.now == 6.0


def test_measured_costs_charge_the_workers_real_time_only():
    clock = VirtualClock()  # costs = the real time the worker spends between points
    with cf.ThreadPoolExecutor(max_workers=1) as ex:
        fut = ex.submit(_job, clock, clock.request(), [], "a")
        clock.advance(1000.0)  # far beyond any real cost: the whole fit happens within it
        fut.result(5)
    (t0, s0), (t1, s1), (t2, s2) = clock.events
    assert (s0, s1, s2) == ("start", "land", "end")
    assert t0 == 0.0 <= t1 <= t2 < 5.0 and clock.now == 1000.0


def test_bad_clock_settings_are_errors():
    with pytest.raises(ValueError, match="unknown step"):
        VirtualClock(costs={"fit": 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        VirtualClock(costs={"land": -1})
    with pytest.raises(ValueError, match="scale"):
        VirtualClock(scale=0)
    with pytest.raises(ValueError):
        VirtualClock().advance(-1)
    assert STEPS == ("start", "land", "reselect", "calibrated", "end")


def test_blocking_retrain_wait_and_close_run_virtual_time_on(proj, X):
    clock = VirtualClock(costs={"land": 50.0, "calibrated": 5.0})
    s = proj.session(embeddings=X, clock=clock)
    o = Oracle(s)
    for bi in s.next_batch(10).items:
        s.submit(bi.item.id, o.answer_for(bi.item))
    rep = s.retrain()  # would deadlock if it waited for the worker without running virtual time on
    assert rep.model_version == 1 and s.model_version == 1 and clock.now == 55.0
    b = s.next_batch(10)
    for bi in b.items[:3]:
        s.submit(bi.item.id, o.answer_for(bi.item))
    s.retrain_async()
    clock.advance(10.0)  # the fit on 13 labels lands at 105: not yet
    assert s.model_version == 1
    s.wait()
    assert s.model_version == 2 and clock.now == 110.0  # 55 + 50 to land + 5 to calibrate
    s.retrain_async()  # nothing new: no new version, and close() does not hang on the worker
    s.close()
    assert s.model_version == 2


def _sim(tmp_path, costs, pace=0.1, strategies=("default",)):
    from alworkbench.loop.simulation import simulate

    return simulate("digits", strategies=list(strategies), budget=50, batch_size=10, initial=10, seeds=[0],
                    workdir=tmp_path, progress=False, mode="async", pace=pace, clock="virtual", clock_costs=costs,
                    head={"device": "cpu"})


def _trace(res, strategy="default"):
    return [(p["n_labels"], p["accuracy"], p["strategy"], p["chosen_by_version"], p["model_labels"], p["reselected"],
             p["virtual_seconds"]) for p in res["results"][strategy]["0"]]


def test_fixed_costs_make_the_asynchronous_simulation_deterministic(tmp_path):
    costs = {"land": 0.35, "reselect": 0.05, "calibrated": 0.4, "end": 0.05}
    a = _sim(tmp_path / "a", costs)
    b = _sim(tmp_path / "b", costs)
    assert a["clock"] == "virtual" and a["clock_costs"] == costs and a["pace_seconds_per_answer"] == 0.1
    assert _trace(a) == _trace(b)
    assert _trace(a, "random") == _trace(b, "random")
    # one answer per 0.1 virtual seconds: batch k ends at k seconds
    assert [t[-1] for t in _trace(a)] == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_the_pace_against_the_fit_cost_decides_how_stale_the_batches_are(tmp_path):
    instant = _trace(_sim(tmp_path / "i", {}))
    never = _trace(_sim(tmp_path / "n", {"land": 1e6}))
    # instant fits: each batch after the second opens with the model of the batch before and is re-selected by the
    # newest one as soon as the first answer is given
    assert [t[3] for t in instant] == [0, 0, 1, 2, 3]
    assert [t[4] for t in instant] == [0, 0, 10, 20, 30]
    assert [t[5] for t in instant] == [False, True, True, True, True]
    # a fit that takes longer than the whole run: every batch is chosen without a model, none re-selected
    assert [t[3] for t in never] == [0, 0, 0, 0, 0]
    assert [t[2] for t in never] == ["cold_start"] * 5
    assert not any(t[5] for t in never)


def test_simulate_rejects_an_unknown_clock(tmp_path):
    from alworkbench.loop.simulation import simulate

    with pytest.raises(ConfigError, match="clock"):
        simulate("digits", budget=20, batch_size=10, initial=10, seeds=[0], workdir=tmp_path, progress=False,
                 clock="wall")
