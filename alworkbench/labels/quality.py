"""The annotation trade's quality loop, derived from the append-only store: gold, qualification, review, overlap.

Nothing here is stored as truth: a :class:`QualityView` reads the answer events and the appended records of one
store and derives

* **answers per item and annotator** (the latest active answer of each annotator; answers on gold items, whose
  strategy starts with ``gold:``, are scored and never counted as labels);
* **gold**: ``gold`` records (``{item_id, label | tags, source}``; a later record with ``removed: true`` retires
  one), imported from a CSV or promoted from reviewed items;
* **known-answer comparisons** per annotator: each answer on a gold item (hidden gold or the qualification test),
  plus each answer that review sampling put in the queue and a reviewer then accepted (correct) or corrected
  (wrong, unless the correction equals it). Flagged and disagreeing items are left out of the comparisons:
  they are not a random sample. Accuracy comes with a Wilson interval (statsmodels) and a rolling window;
* **tiers** (``quality.tiers``): the share of an annotator's answers sampled for review follows their rolling
  accuracy once ``quality.min_known`` comparisons exist;
* **qualification**: ``qualification`` records appended when a test batch is complete; while
  ``quality.qualification_items`` > 0, answers of an annotator without a passing test are kept but not trained on;
* **review state** per item (``unreviewed``, ``accepted``, ``corrected``): ``review`` records; a review covers the
  answers that existed when it was made, so a later answer on the item opens it again;
* **the final label** used for training and export: the reviewer's, else the consensus of the counted answers
  (majority; a tie goes to review and trains on nothing), else the single answer, else the gold answer;
* **the review queue**: flagged items with their notes, items where annotators disagree, and sampled answers.
"""
from __future__ import annotations

import json
import math
import statistics
import time
import zlib
from typing import Any, Iterable, Optional, Sequence

from ..errors import AlwbError
from .agreement import agreement, annotator_confusion, consensus
from .store import GOLD_PREFIX

GOLD, REVIEW, QUALIFICATION = "gold", "review", "qualification"
WORK_SOURCES = ("gold", "review")  # known answers from ordinary work: they set tiers and the notice
RENAME_STRATEGY = "rename"  # the strategy of the events `alwb classes rename` appends (alworkbench.classes)
REVIEW_STATES = ("unreviewed", "accepted", "corrected")
QUALIFICATION_STRATEGY = GOLD_PREFIX + "qualification"
HIDDEN_GOLD_STRATEGY = GOLD_PREFIX + "hidden"


def stable_unit(*parts: Any) -> float:
    """A number in [0, 1) fixed by ``parts`` (crc32): the same item or answer is sampled in every process."""
    return zlib.crc32("|".join(map(str, parts)).encode("utf-8")) / 2**32


def wilson(correct: int, n: int, alpha: float = 0.05) -> tuple[Optional[float], Optional[float]]:
    """The Wilson score interval for ``correct`` of ``n`` (statsmodels' ``proportion_confint``)."""
    if n <= 0:
        return None, None
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(int(correct), int(n), alpha=alpha, method="wilson")
    return float(lo), float(hi)


def _value(ev: dict):
    """The comparable value of an answer event: a class name, a sorted tag tuple, or None (skip / flag)."""
    if ev["kind"] == "label":
        return ev["value"]
    if ev["kind"] == "tags":
        return tuple(sorted(ev["value"]))
    return None


def _norm(v):
    if v is None:
        return None
    if isinstance(v, (list, tuple)):
        return tuple(sorted(v))
    return v


def _record_value(rec: dict):
    if rec.get("tags") is not None:
        return tuple(sorted(rec["tags"]))
    return rec.get("label")


def value_fields(value, multilabel: bool) -> dict:
    """How a label or tag set is written into a record."""
    return {"tags": list(_norm(value))} if multilabel else {"label": value}


class QualityView:
    """The quality state of one project, derived from its store (see the module docstring). Cheap to build:
    one pass over the active events and the records; build a new one to see new answers."""

    def __init__(self, store, config, *, now: Optional[float] = None):
        self.store = store
        self.config = config
        self.q = config.quality
        self.multilabel = bool(config.multilabel)
        self.classes: list[str] = list(config.tags if self.multilabel else config.classes)
        self.now = time.time() if now is None else now
        events = store.active_events()
        # `alwb classes rename` appends one event per item (strategy "rename"): not an annotator's answer but a
        # mapping old -> new applied to every answer on the item that used the old name
        self.answer_events = [e for e in events if not str(e["strategy"]).startswith(GOLD_PREFIX)
                              and e["strategy"] != RENAME_STRATEGY]
        self.gold_events = [e for e in events if str(e["strategy"]).startswith(GOLD_PREFIX)]
        # item -> annotator -> latest active answer event (values mapped through later renames)
        self.answers: dict[str, dict[str, dict]] = {}
        self._renames: list[tuple[float, str, Any, Any]] = []  # (at, item, old value, new value)
        last: dict[str, Any] = {}
        for e in events:
            if str(e["strategy"]).startswith(GOLD_PREFIX):
                continue
            sid = e["sample_id"]
            if e["strategy"] == RENAME_STRATEGY:
                old, new = last.get(sid), _norm(_value(e))
                if old is not None and new is not None and old != new:
                    self._renames.append((e["created_at"], sid, old, new))
                    self.answers[sid] = {w: self._renamed(a, old, new) for w, a in self.answers.get(sid, {}).items()}
                    last[sid] = new
                continue
            self.answers.setdefault(sid, {})[e["annotator"]] = e
            last[sid] = _norm(_value(e))
        self.gold: dict[str, Any] = {}
        self.gold_source: dict[str, str] = {}
        for r in store.records(GOLD):
            if r.get("removed"):
                self.gold.pop(r["item_id"], None)
            else:
                self.gold[r["item_id"]] = _record_value(r)
                self.gold_source[r["item_id"]] = str(r.get("source", ""))
        self.qualifications: list[dict] = store.records(QUALIFICATION)
        self.reviews_all: list[dict] = store.records(REVIEW)
        self.acks: list[dict] = store.records("guideline_ack")
        # item -> latest review still covering the current answers
        self.reviews: dict[str, dict] = {}
        for r in self.reviews_all:
            self.reviews[r["item_id"]] = self._renamed_review(r)
        for sid, r in list(self.reviews.items()):
            last = max((e["id"] for e in self.answers.get(sid, {}).values()), default=0)
            if last > int(r.get("last_event_id") or 0):
                del self.reviews[sid]  # answered again since: open for review again
        self._known = self._comparisons()

    def _map(self, value, old, new):
        """``value`` with the rename old -> new applied (single label: equal to old; tags: old's extra tag)."""
        v = _norm(value)
        if v is None:
            return value
        if not self.multilabel:
            return new if v == old else value
        gone, came = set(old) - set(new), set(new) - set(old)
        if len(gone) != 1 or len(came) > 1 or not (set(v) & gone):
            return value
        return tuple(sorted((set(v) - gone) | came))

    def _renamed(self, ev: dict, old, new) -> dict:
        v = self._map(_value(ev), old, new)
        if v is None or _norm(v) == _norm(_value(ev)):
            return ev
        return {**ev, "value": tuple(v) if self.multilabel else v}

    def _renamed_review(self, r: dict) -> dict:
        value = _record_value(r)
        for at, sid, old, new in self._renames:
            if sid == r["item_id"] and at > r["created_at"]:
                value = self._map(value, old, new)
        return r if value == _record_value(r) else {**r, **value_fields(value, self.multilabel)}

    # ------------------------------------------------------------------ annotators
    def annotators(self) -> list[str]:
        names = {e["annotator"] for e in self.answer_events} | {e["annotator"] for e in self.gold_events}
        names |= {q["annotator"] for q in self.qualifications}
        return sorted(names)

    def qualification_required(self) -> bool:
        return int(self.q.qualification_items) > 0

    def qualification(self, annotator: str) -> Optional[dict]:
        """The latest qualification record of ``annotator`` (None if never tested)."""
        mine = [q for q in self.qualifications if q.get("annotator") == annotator]
        return mine[-1] if mine else None

    def qualified(self, annotator: str) -> Optional[bool]:
        """True after a passed test; False after a failed one; None when never tested."""
        q = self.qualification(annotator)
        if q is None:
            return None
        return bool(any(x.get("passed") for x in self.qualifications if x.get("annotator") == annotator))

    def counts(self, annotator: str) -> bool:
        """Are this annotator's answers used for training? Always, unless a qualification test is required and
        they have not passed it."""
        return not self.qualification_required() or self.qualified(annotator) is True

    def may_retry(self, annotator: str) -> bool:
        """After a failed test, a retry needs the guideline acknowledged again (after the failure)."""
        q = self.qualification(annotator)
        if q is None or q.get("passed"):
            return True
        # records share one id sequence: an acknowledgement with a larger id came after the failed test
        return any(a.get("annotator") == annotator and a["id"] > q["id"] for a in self.acks)

    # ------------------------------------------------------------------ known-answer comparisons
    def _comparisons(self) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = {}
        for e in self.gold_events:
            g = self.gold.get(e["sample_id"])
            if g is None:
                continue
            v = _value(e)
            out.setdefault(e["annotator"], []).append(
                {"at": e["created_at"], "item_id": e["sample_id"], "correct": v is not None and _norm(v) == g,
                 "source": "qualification" if e["strategy"] == QUALIFICATION_STRATEGY else "gold",
                 "answered": v is not None})
        for sid, r in self.reviews.items():
            final = _record_value(r)
            for who, a in (r.get("answers") or {}).items():
                if f"sample:{who}" not in (r.get("reasons") or ()):
                    continue
                v = _norm(a.get("value"))
                out.setdefault(who, []).append({"at": float(a.get("at") or r["created_at"]), "item_id": sid,
                                                "correct": v is not None and v == final, "source": "review",
                                                "answered": v is not None})
        for v in out.values():
            v.sort(key=lambda c: c["at"])
        return out

    def accuracy(self, annotator: str, *, window: Optional[int] = None, sources: Sequence[str] = ()) -> dict:
        """Known-answer accuracy of ``annotator``: ``{n, correct, accuracy, ci_low, ci_high}`` over every
        comparison (or the latest ``window``; or only the given ``sources``: gold, qualification, review).
        Skips and flags on gold count as not correct in the qualification test and are left out elsewhere."""
        comps = [c for c in self._known.get(annotator, []) if not sources or c["source"] in sources]
        comps = [c for c in comps if c["answered"] or c["source"] == "qualification"]
        if window:
            comps = comps[-int(window):]
        n = len(comps)
        k = sum(c["correct"] for c in comps)
        lo, hi = wilson(k, n)
        return {"n": n, "correct": k, "accuracy": (k / n) if n else None, "ci_low": lo, "ci_high": hi}

    def accuracy_series(self, annotator: str) -> list[dict]:
        """Cumulative and rolling accuracy after each comparison (for the accuracy-over-time plot)."""
        comps = [c for c in self._known.get(annotator, []) if c["answered"] or c["source"] == "qualification"]
        out, k = [], 0
        w = int(self.q.window)
        for i, c in enumerate(comps, 1):
            k += c["correct"]
            recent = comps[max(0, i - w):i]
            out.append({"n": i, "at": c["at"], "cumulative": k / i,
                        "rolling": sum(x["correct"] for x in recent) / len(recent), "source": c["source"]})
        return out

    def _tier_for(self, acc: dict) -> dict:
        tiers = list(self.q.tiers)
        if acc["n"] < int(self.q.min_known):
            standard = next((t for t in tiers if t.get("review_sample") is None), tiers[min(1, len(tiers) - 1)])
            t = dict(standard)
            measured = False
        else:
            t = dict(next(t for t in tiers if acc["accuracy"] >= t["min_accuracy"]))
            measured = True
        rate = self.q.review_sample if t.get("review_sample") is None else t["review_sample"]
        return {"name": t.get("name", ""), "min_accuracy": t["min_accuracy"], "review_sample": float(rate),
                "measured": measured, "rolling_accuracy": acc["accuracy"], "n_known": acc["n"]}

    def tier(self, annotator: str) -> dict:
        """The annotator's tier from their rolling accuracy on ordinary work (hidden gold and sampled reviews; a
        qualification test is its own gate), the standard tier until ``min_known`` comparisons."""
        return self._tier_for(self.accuracy(annotator, window=int(self.q.window), sources=WORK_SOURCES))

    def rate_at(self, annotator: str, t: float) -> float:
        """The review sampling rate of ``annotator``'s tier as it stood at time ``t`` (comparisons made by then)."""
        import bisect

        cache = self.__dict__.setdefault("_rate_cache", {})
        if annotator not in cache:
            comps = [c for c in self._known.get(annotator, []) if c["source"] in WORK_SOURCES and c["answered"]]
            prefix = [0]
            for c in comps:
                prefix.append(prefix[-1] + int(c["correct"]))
            cache[annotator] = ([c["at"] for c in comps], prefix)
        ats, prefix = cache[annotator]
        hi = bisect.bisect_right(ats, t)
        lo = max(0, hi - int(self.q.window))
        n = hi - lo
        return self._tier_for({"n": n, "accuracy": ((prefix[hi] - prefix[lo]) / n) if n else None})["review_sample"]

    def below_pass_mark(self, annotator: str) -> Optional[str]:
        """A one-line notice when the annotator's rolling known-answer accuracy is below the pass mark."""
        acc = self.accuracy(annotator, window=int(self.q.window), sources=WORK_SOURCES)
        if acc["n"] < int(self.q.min_known) or acc["accuracy"] >= float(self.q.pass_mark):
            return None
        return (f"{annotator}: {acc['accuracy']:.0%} correct on the latest {acc['n']} known answers, below the "
                f"pass mark of {float(self.q.pass_mark):.0%}. Re-read the guideline; every answer is now "
                f"reviewed at rate {self.tier(annotator)['review_sample']:.0%}.")

    # ------------------------------------------------------------------ items
    def _counted(self, sid: str) -> dict[str, Any]:
        """annotator -> value of the answers on ``sid`` that count (label/tags answers of counted annotators)."""
        out = {}
        for who, e in self.answers.get(sid, {}).items():
            v = _value(e)
            if v is not None and self.counts(who):
                out[who] = _norm(v)
        return out

    def item_state(self, sid: str) -> dict:
        """Answers, consensus, review state and final label of one item."""
        answers = self.answers.get(sid, {})
        counted = self._counted(sid)
        review = self.reviews.get(sid)
        values = list(counted.values())
        cons, tie = (consensus(values, multilabel=self.multilabel) if len(values) >= 2 else
                     ((values[0] if values else None), False))
        cons = _norm(cons)
        state = "unreviewed" if review is None else ("accepted" if review["action"] == "accept" else "corrected")
        if review is not None:
            final, source = _record_value(review), "review"
        elif len(values) >= 2:
            final, source = (None, "tie") if tie else (cons, "consensus")
        elif values:
            final, source = values[0], "single"
        elif sid in self.gold:
            final, source = self.gold[sid], "gold"
        else:
            final, source = None, "none"
        return {"item_id": sid, "answers": answers, "counted": counted, "consensus": cons, "tie": bool(tie),
                "review_state": state, "review": review, "final": final, "source": source,
                "flags": {w: e["note"] for w, e in answers.items() if e["kind"] == "flag"},
                "gold": self.gold.get(sid)}

    def items(self) -> Iterable[str]:
        return sorted(set(self.answers) | set(self.reviews) | set(self.gold))

    def final_labels(self, *, include_gold: bool = True) -> dict:
        """item id -> the label (or sorted tag tuple) to train on and export: review, consensus, single answer,
        then gold. Ties and items with only flags or skips have none."""
        out = {}
        for sid in self.items():
            st = self.item_state(sid)
            if st["final"] is not None and (include_gold or st["source"] != "gold"):
                out[sid] = st["final"]
        return out

    def review_states(self) -> dict[str, str]:
        return {sid: self.item_state(sid)["review_state"] for sid in self.items() if sid in self.answers}

    # ------------------------------------------------------------------ review queue
    @staticmethod
    def _sampled(e: dict, rate: float) -> bool:
        return rate > 0 and stable_unit("review", e["sample_id"], e["annotator"], e["id"]) < rate

    def review_queue(self, reviewer: Optional[str] = None) -> list[dict]:
        """Items waiting for review, most urgent first: flagged (with notes), disagreements and ties, then sampled
        answers; oldest first within each. Items whose only answers are the reviewer's own are left out unless
        ``quality.review_own``. An answer is sampled at the higher of two rates: its annotator's tier now (a drop to
        probation pulls in their earlier answers) and at the time of the answer (a rise never drops what was
        already queued)."""
        tiers = {w: self.tier(w)["review_sample"] for w in {e["annotator"] for e in self.answer_events}}
        out = []
        for sid, answers in self.answers.items():
            if sid in self.reviews:
                continue
            if reviewer is not None and not self.q.review_own and set(answers) <= {reviewer}:
                continue
            reasons = []
            if any(e["kind"] == "flag" for e in answers.values()):
                reasons.append("flag")
            vals = {json.dumps(_norm(_value(e))) for e in answers.values() if _value(e) is not None}
            if len(vals) > 1:
                reasons.append("disagreement")
            for who, e in sorted(answers.items()):
                if (reviewer is None or self.q.review_own or who != reviewer) and _value(e) is not None \
                        and self._sampled(e, max(tiers.get(who, 0.0), self.rate_at(who, e["created_at"]))):
                    reasons.append(f"sample:{who}")
            if not reasons:
                continue
            rank = 0 if "flag" in reasons else 1 if "disagreement" in reasons else 2
            st = self.item_state(sid)
            out.append({"item_id": sid, "reasons": reasons, "rank": rank,
                        "at": min(e["created_at"] for e in answers.values()),
                        "answers": [{"annotator": w, "kind": e["kind"], "value": _norm(_value(e)), "note": e["note"],
                                     "event_id": e["id"], "at": e["created_at"]} for w, e in sorted(answers.items())],
                        "consensus": st["consensus"], "tie": st["tie"]})
        out.extend(self._auto_queue())
        out.sort(key=lambda r: (r["rank"], r["at"], r["item_id"]))
        return out

    def _auto_queue(self) -> list[dict]:
        """Sampled model labels of confidence routing (``auto_label`` records with ``sampled``; reason ``auto``),
        not yet reviewed and not answered by a person: a reviewer's accept or correction measures their precision."""
        out = []
        for r in {r["item_id"]: r for r in self.store.records("auto_label")}.values():
            sid = r["item_id"]
            if not r.get("sampled") or sid in self.reviews or sid in self.answers:
                continue
            who = f"model:v{r.get('model_version')}"
            value = _norm(r["label"])  # a sorted tag tuple for a multi-label auto label
            out.append({"item_id": sid, "reasons": ["auto"], "rank": 3, "at": r["created_at"],
                        "answers": [{"annotator": who, "kind": "tags" if isinstance(value, tuple) else "label",
                                     "value": value, "note": "", "event_id": 0, "at": r["created_at"]}],
                        "consensus": value, "tie": False, "confidence": r.get("confidence")})
        return out

    # ------------------------------------------------------------------ agreement and reports
    def ratings(self) -> dict[str, dict[str, Any]]:
        """item -> {annotator: value} for items with label/tags answers from at least two annotators."""
        out = {}
        for sid, answers in self.answers.items():
            r = {w: _norm(_value(e)) for w, e in answers.items() if _value(e) is not None}
            if len(r) >= 2:
                out[sid] = r
        return out

    def agreement(self) -> dict:
        return agreement(self.ratings(), self.classes, multilabel=self.multilabel)

    def confusion(self, a: str, b: str) -> dict:
        return annotator_confusion(self.ratings(), a, b, self.classes)

    def annotator_report(self, annotator: str) -> dict:
        mine = [e for e in self.answer_events if e["annotator"] == annotator]
        times = [float(e["time_spent_s"]) for e in mine if e.get("time_spent_s") is not None]
        med = statistics.median(times) if times else None
        # answers a reviewer decided on (a flag or skip gave no answer to accept or reject)
        reviewed = [(sid, r) for sid, r in self.reviews.items() if annotator in (r.get("answers") or {})
                    and (r["answers"][annotator] or {}).get("value") is not None]
        accepted = sum(1 for sid, r in reviewed
                       if _norm((r["answers"][annotator] or {}).get("value")) == _record_value(r))
        gold = self.accuracy(annotator, sources=("gold", "qualification"))
        acc = self.accuracy(annotator)
        q = self.qualification(annotator)
        return {"annotator": annotator, "answers": len(mine), "labels": sum(e["kind"] in ("label", "tags") for e in mine),
                "flags": sum(e["kind"] == "flag" for e in mine), "skips": sum(e["kind"] == "skip" for e in mine),
                "gold_answers": gold["n"], "gold_accuracy": gold["accuracy"], "gold_ci": [gold["ci_low"], gold["ci_high"]],
                "known_answers": acc["n"], "accuracy": acc["accuracy"], "accuracy_ci": [acc["ci_low"], acc["ci_high"]],
                "rolling_accuracy": self.accuracy(annotator, window=int(self.q.window))["accuracy"],
                "tier": self.tier(annotator)["name"], "review_sample": self.tier(annotator)["review_sample"],
                "reviewed": len(reviewed), "review_acceptance": (accepted / len(reviewed)) if reviewed else None,
                "median_seconds": med, "images_per_minute": (60.0 / med) if med else None,
                "qualified": self.qualified(annotator), "counted": self.counts(annotator),
                "qualification_score": None if q is None else q.get("score")}

    def report(self) -> dict:
        """Everything ``alwb quality`` prints: per annotator, agreement, review states, the open queue."""
        states = self.review_states()
        queue = self.review_queue()
        return {"annotators": [self.annotator_report(a) for a in self.annotators()],
                "agreement": self.agreement(),
                "review_states": {s: sum(1 for v in states.values() if v == s) for s in REVIEW_STATES},
                "review_queue": {"n": len(queue), "flag": sum(r["rank"] == 0 for r in queue),
                                 "disagreement": sum(r["rank"] == 1 for r in queue),
                                 "sample": sum(r["rank"] == 2 for r in queue),
                                 "auto": sum(r["rank"] == 3 for r in queue),
                                 "items": [{"item_id": r["item_id"], "reasons": r["reasons"]} for r in queue[:50]]},
                "gold": {"n": len(self.gold), "sources": sorted(set(self.gold_source.values()))},
                "overlap": {"share": float(self.q.overlap_share), "k": int(self.q.overlap_k),
                            "items_with_2plus": len(self.ratings())},
                "settings": {"review_sample": float(self.q.review_sample), "gold_rate": float(self.q.gold_rate),
                             "qualification_items": int(self.q.qualification_items),
                             "pass_mark": float(self.q.pass_mark)}}


# ---------------------------------------------------------------------- writing: gold and reviews
def read_gold_csv(path, schema) -> list[tuple[str, Any]]:
    """(item_id, value) rows of a gold CSV: ``id,label`` (single-label) or ``id,tags`` with tags separated by
    ``;`` or ``|``. A header row naming the columns is allowed. Every row is checked against the project's
    classes or tags; the error names the line."""
    import csv
    from pathlib import Path

    from ..errors import ConfigError

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"gold file {p} does not exist")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"gold file {p} is not UTF-8 text ({exc.reason} at byte {exc.start}): save it as UTF-8 "
                          "CSV") from None
    rows = []
    import io

    with io.StringIO(text, newline="") as f:
        for n, row in enumerate(csv.reader(f), 1):
            if not row or not any(c.strip() for c in row):
                continue
            if len(row) < 2:
                raise ConfigError(f"{p}:{n}: expected two columns (id,{'tags' if schema.multilabel else 'label'}), "
                                  f"got {row!r}")
            sid, val = row[0].strip(), row[1].strip()
            if n == 1 and sid.lower() in ("id", "item_id", "sample_id") and val.lower() in ("label", "tags", "class"):
                continue
            if schema.multilabel:
                tags = tuple(sorted({t.strip() for t in val.replace("|", ";").split(";") if t.strip()}))
                bad = [t for t in tags if t not in schema.allowed_tags]
                if not tags or bad:
                    raise ConfigError(f"{p}:{n}: unknown or empty tags {bad or val!r}; allowed: {', '.join(schema.allowed_tags)}")
                rows.append((sid, tags))
            else:
                if val not in schema.classes:
                    raise ConfigError(f"{p}:{n}: unknown class {val!r}; allowed: {', '.join(schema.classes)}")
                rows.append((sid, val))
    return rows


def add_gold(store, rows: Sequence[tuple[str, Any]], *, multilabel: bool, source: str, known_ids=None) -> dict:
    """Append a ``gold`` record per row; unknown item ids are reported, not added. Returns counts."""
    known = None if known_ids is None else set(known_ids)
    added, unknown = 0, []
    for sid, value in rows:
        if known is not None and sid not in known:
            unknown.append(sid)
            continue
        store.append_record(GOLD, {"item_id": sid, **value_fields(value, multilabel), "source": source})
        added += 1
    return {"added": added, "unknown": unknown}


def promote_reviewed(store, config, item_ids: Optional[Sequence[str]] = None) -> int:
    """Make reviewed items gold (their reviewed label); returns how many were added."""
    view = QualityView(store, config)
    ids = list(view.reviews) if item_ids is None else list(item_ids)
    n = 0
    for sid in ids:
        r = view.reviews.get(sid)
        if r is None:
            raise AlwbError(f"item {sid!r} has no review to promote; review it first")
        if view.gold.get(sid) == _record_value(r):
            continue
        store.append_record(GOLD, {"item_id": sid, **value_fields(_record_value(r), view.multilabel),
                                   "source": "review", "review_id": r["id"]})
        n += 1
    return n


def gold_answer_correct(value, gold) -> bool:
    return value is not None and _norm(value) == _norm(gold)


def nan_to_none(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x
