"""Issue 10, "Show": a simulated annotator with 20% noise and hidden gold at 5% is caught within 200 answers.

One annotator (an Oracle with ``noise``) labels a digits project in batches of 20 with hidden gold at 5% (gold from
ground truth for 100 non-held-out items); after each batch a perfect reviewer (another annotator's
ReviewSession) works through the review queue, accepting answers equal to the ground truth and correcting the
others. The known-answer accuracy the store gives (``QualityView.accuracy``: hidden gold + sampled answers a
reviewer decided) is compared with the truth measured from the store (the share of the annotator's non-gold
answers equal to the ground truth), and the tier is recorded after every batch.

Deterministic per seed: the ``random`` strategy (seeded), no background fit (``warm_start=False``, no retrain),
the oracle and the hidden-gold placement seeded, review sampling a hash of (item, annotator, event id).

Over seeds 0-29 (measured while writing this test) 27 of 30 meet both conditions for the 20% annotator; the misses
are statistical, not the estimator: two (5, 17) answered their first 10 known items all correctly, which puts an
80% annotator in the "trusted" tier (no review sampling; P = 0.8^10 ~ 11%), after which only hidden gold measures
them; one (16) has a 60-answer stretch at ~50% accuracy (the oracle's random stream) while back in the standard
tier. The 2%-noise control never reached probation in 20 seeds.
"""
from __future__ import annotations

import numpy as np
import pytest

from alworkbench import Project
from alworkbench.labels.quality import QualityView, add_gold
from alworkbench.loop.oracle import Oracle

N_ANSWERS = 200
BATCH = 20
GOLD_ITEMS = 100


def run_annotator(tmp_path, seed: int, noise: float) -> dict:
    """Label N_ANSWERS answers (hidden gold included) with a perfect reviewer after every batch; return the
    measured and true accuracy and the tier after each batch."""
    p = Project.init(tmp_path / f"p{seed}-{noise}", "digits", query={"batch_size": BATCH, "seed": seed},
                     quality={"gold_rate": 0.05})
    try:
        X = p.source.pixels.reshape(len(p.items), -1).astype("float32") / 16.0
        gt = p.source.ground_truth()
        held_out = p.eval_mask()
        rng = np.random.default_rng(seed)
        gold_idx = rng.choice(np.flatnonzero(~held_out), GOLD_ITEMS, replace=False)
        added = add_gold(p.store, [(p.items[i].id, gt[i]) for i in gold_idx], multilabel=False,
                         source="ground truth", known_ids=[it.id for it in p.items])
        assert added == {"added": GOLD_ITEMS, "unknown": []}
        gold_ids = {p.items[i].id for i in gold_idx}

        ana = p.session(annotator="ana", embeddings=X, strategy="random", warm_start=False)
        reviewer = p.session(annotator="rita", embeddings=X, warm_start=False).review()
        oracle = Oracle(ana, noise=noise, seed=seed, name="ana")
        truth_of = {it.id: gt[i] for i, it in enumerate(p.items)}

        n, timeline, n_gold_shown = 0, [], 0
        while n < N_ANSWERS:
            ana.next_batch()
            while n < N_ANSWERS:
                bi, _ = ana.show_next()
                if bi is None:
                    break
                n_gold_shown += bi.item.id in gold_ids
                ana.submit(bi.item.id, oracle.answer_for(bi.item))
                n += 1
            # the reviewer works through the queue (re-read after each decision, as several reviewers would)
            while True:
                queue = reviewer.queue()
                if not queue:
                    break
                entry = queue[0]
                sid = entry["item_id"]
                values = {a["value"] for a in entry["answers"] if a["value"] is not None}
                if values == {truth_of[sid]}:
                    reviewer.accept(sid)
                else:
                    reviewer.correct(sid, truth_of[sid], reason="wrong class (checked against ground truth)")
            tier = QualityView(p.store, p.config).tier("ana")
            timeline.append((n, tier["name"], tier["n_known"], tier["rolling_accuracy"]))

        view = QualityView(p.store, p.config)
        acc = view.accuracy("ana")
        mine = [e for e in p.store.active_events(gold=False) if e["annotator"] == "ana"]
        gold_answers = [e for e in p.store.active_events(gold=True) if e["annotator"] == "ana"]
        truth = float(np.mean([e["value"] == truth_of[e["sample_id"]] for e in mine]))
        ana.close()
        reviewer.session.close()
        return {"acc": acc, "truth": truth, "timeline": timeline, "n_answers": len(mine) + len(gold_answers),
                "n_gold_answers": len(gold_answers), "n_gold_shown": n_gold_shown,
                "gold_strategies": {e["strategy"] for e in gold_answers}}
    finally:
        p.close()


def _show(r: dict) -> str:
    tl = " ".join(f"{n}:{name}({k})" for n, name, k, _ in r["timeline"])
    return (f"measured {r['acc']['accuracy']:.3f} on {r['acc']['n']} known answers "
            f"[{r['acc']['ci_low']:.3f}, {r['acc']['ci_high']:.3f}], truth {r['truth']:.3f}; tiers {tl}")


@pytest.mark.parametrize("seed", range(5))
def test_noisy_annotator_measured_within_5_points_and_tier_drops(tmp_path, seed):
    r = run_annotator(tmp_path, seed, noise=0.2)
    # hidden gold was mixed in at about 5% and scored (strategy gold:hidden), not counted as labels
    assert r["n_answers"] == N_ANSWERS, r
    assert r["n_gold_answers"] == r["n_gold_shown"] and 5 <= r["n_gold_answers"] <= 20, _show(r)
    assert r["gold_strategies"] == {"gold:hidden"}
    assert 0.7 <= r["truth"] <= 0.9, _show(r)  # the oracle really is about 80% right
    # measured accuracy within 5 points of the truth after 200 answers, and the truth inside its 95% interval
    assert abs(r["acc"]["accuracy"] - r["truth"]) <= 0.05, _show(r)
    assert r["acc"]["ci_low"] <= r["truth"] <= r["acc"]["ci_high"], _show(r)
    # the tier changed: standard (unmeasured at first) -> probation (every answer reviewed)
    names = [name for _, name, _, _ in r["timeline"]]
    assert names[0] == "standard", _show(r)
    assert "probation" in names, _show(r)
    first = names.index("probation")
    assert all(x == "standard" for x in names[:first]), _show(r)
    n_at, _, n_known, rolling = r["timeline"][first]
    assert n_known >= 10 and rolling < 0.90, _show(r)  # measured (min_known) and below the standard tier


@pytest.mark.parametrize("seed", range(5))
def test_careful_annotator_never_on_probation(tmp_path, seed):
    """Control: a 2%-noise annotator under the same loop is never put on probation."""
    r = run_annotator(tmp_path, seed, noise=0.02)
    assert r["n_answers"] == N_ANSWERS and r["n_gold_answers"] >= 5, _show(r)
    assert r["truth"] >= 0.95, _show(r)
    names = [name for _, name, _, _ in r["timeline"]]
    assert "probation" not in names, _show(r)
    assert r["acc"]["n"] >= 10 and r["acc"]["accuracy"] >= 0.9, _show(r)
