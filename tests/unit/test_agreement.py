"""Inter-annotator agreement (alworkbench.labels.agreement).

The module delegates to scikit-learn / statsmodels / krippendorff; these tests check its numbers
against textbook formulas written out here, on published examples where there is one.
"""
import itertools
import json
import subprocess
import sys
import warnings
from collections import Counter

import pytest

from alworkbench.labels.agreement import agreement, annotator_confusion, consensus


# ---------------------------------------------------------------------------------------------
# independent reference formulas (plain Python, no library)


def cohen_textbook(ya, yb):
    """kappa = (p_o - p_e) / (1 - p_e), p_e from the two raters' marginals."""
    n = len(ya)
    po = sum(a == b for a, b in zip(ya, yb)) / n
    ca, cb = Counter(ya), Counter(yb)
    pe = sum(ca[c] * cb[c] for c in set(ya) | set(yb)) / n ** 2
    return (po - pe) / (1 - pe)


def fleiss_textbook(table):
    """Fleiss (1971): table[i][j] = raters putting subject i in category j, n raters per subject."""
    N = len(table)
    n = sum(table[0])
    p_j = [sum(row[j] for row in table) / (N * n) for j in range(len(table[0]))]
    P_i = [(sum(x * x for x in row) - n) / (n * (n - 1)) for row in table]
    P_bar = sum(P_i) / N
    Pe = sum(p * p for p in p_j)
    return (P_bar - Pe) / (1 - Pe)


def alpha_nominal_textbook(units):
    """Krippendorff's alpha (nominal) from the coincidence matrix; units = list of value lists
    (missing ratings simply absent); units with fewer than two values are not pairable."""
    o = Counter()
    for vals in units:
        m = len(vals)
        if m < 2:
            continue
        for i, j in itertools.permutations(range(m), 2):
            o[(vals[i], vals[j])] += 1 / (m - 1)
    n_c = Counter()
    for (c, _k), w in o.items():
        n_c[c] += w
    n = sum(n_c.values())
    d_o = sum(w for (c, k), w in o.items() if c != k)
    d_e = sum(n_c[c] * n_c[k] for c in n_c for k in n_c if c != k) / (n - 1)
    return 1 - d_o / d_e


def strict(fn, *args, **kwargs):
    """Run with every warning turned into an error: the module must not leak library warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn(*args, **kwargs)


def from_columns(columns):
    """{annotator: [value per item or None]} -> {item: {annotator: value}}."""
    n = len(next(iter(columns.values())))
    return {f"i{j}": {a: col[j] for a, col in columns.items() if col[j] is not None} for j in range(n)}


# ---------------------------------------------------------------------------------------------
# Cohen's kappa


def test_cohen_kappa_two_raters_matches_textbook():
    A = ["y"] * 6 + ["n"] * 4
    B = ["y", "y", "y", "y", "n", "n", "y", "n", "n", "n"]
    res = strict(agreement, from_columns({"ann": A, "bob": B}), ["y", "n"])
    expected = cohen_textbook(A, B)
    assert expected == pytest.approx(0.4)  # p_o = 0.7, p_e = 0.6*0.5 + 0.4*0.5 = 0.5
    assert res["cohen_kappa"] == pytest.approx(expected)
    assert res["pairwise_cohen"] == [{"a": "ann", "b": "bob", "n": 10, "kappa": pytest.approx(expected)}]
    assert res["n_items"] == 10 and res["n_annotators"] == 2 and res["annotators"] == ["ann", "bob"]
    assert res["percent_agreement"] == pytest.approx(0.7)
    # two raters, every item rated by both: Fleiss on that table and alpha from the coincidences
    table = [[int(a == "y") + int(b == "y"), int(a == "n") + int(b == "n")] for a, b in zip(A, B)]
    assert res["fleiss_kappa"] == pytest.approx(fleiss_textbook(table))
    assert res["fleiss_raters"] == 2 and res["fleiss_n_items"] == 10
    assert res["krippendorff_alpha"] == pytest.approx(alpha_nominal_textbook([[a, b] for a, b in zip(A, B)]))


def test_perfect_agreement_is_one():
    col = ["cat", "dog", "bird", "cat", "dog", "bird"]
    res = strict(agreement, from_columns({"a": col, "b": col, "c": col}), ["cat", "dog", "bird"])
    assert res["percent_agreement"] == 1.0
    assert res["fleiss_kappa"] == pytest.approx(1.0)
    assert res["krippendorff_alpha"] == pytest.approx(1.0)
    assert all(p["kappa"] == pytest.approx(1.0) for p in res["pairwise_cohen"])
    assert len(res["pairwise_cohen"]) == 3
    assert res["cohen_kappa"] is None  # three annotators: only the pairwise values
    for c in ("cat", "dog", "bird"):
        assert res["per_class"][c] == {"n": 2, "krippendorff_alpha": pytest.approx(1.0),
                                       "fleiss_kappa": pytest.approx(1.0)}


def test_systematic_disagreement_is_negative():
    A = ["x", "y"] * 5
    B = ["y", "x"] * 5
    res = strict(agreement, from_columns({"a": A, "b": B}), ["x", "y"])
    assert res["percent_agreement"] == 0.0
    assert res["cohen_kappa"] == pytest.approx(cohen_textbook(A, B)) == pytest.approx(-1.0)
    assert res["fleiss_kappa"] < 0
    assert res["krippendorff_alpha"] < 0
    assert res["krippendorff_alpha"] == pytest.approx(alpha_nominal_textbook([[a, b] for a, b in zip(A, B)]))


def test_no_variance_gives_none_not_nan_and_no_warning():
    ratings = from_columns({"a": ["cat"] * 5, "b": ["cat"] * 5, "c": ["cat"] * 5})
    res = strict(agreement, ratings, ["cat", "dog"])
    assert res["percent_agreement"] == 1.0
    assert res["cohen_kappa"] is None
    assert [p["kappa"] for p in res["pairwise_cohen"]] == [None, None, None]
    assert res["fleiss_kappa"] is None
    assert res["krippendorff_alpha"] is None
    assert res["per_class"]["cat"] == {"n": 5, "krippendorff_alpha": None, "fleiss_kappa": None}
    assert res["per_class"]["dog"] == {"n": 0, "krippendorff_alpha": None, "fleiss_kappa": None}
    json.dumps(res, allow_nan=False)


def test_empty_and_too_few_items():
    res = strict(agreement, {}, ["a", "b"])
    assert res["n_items"] == 0 and res["annotators"] == [] and res["percent_agreement"] is None
    assert res["cohen_kappa"] is None and res["fleiss_kappa"] is None and res["krippendorff_alpha"] is None
    assert res["pairwise_cohen"] == []
    # one item only: no pair has two items in common, Fleiss needs two items
    res = strict(agreement, {"i": {"p": "a", "q": "b"}}, ["a", "b"])
    assert res["n_items"] == 1 and res["pairwise_cohen"] == [] and res["cohen_kappa"] is None
    assert res["fleiss_kappa"] is None
    json.dumps(res, allow_nan=False)


def test_items_with_one_rater_are_ignored():
    A = ["y"] * 6 + ["n"] * 4
    B = ["y", "y", "y", "y", "n", "n", "y", "n", "n", "n"]
    base = from_columns({"ann": A, "bob": B})
    extra = dict(base)
    extra.update({"solo1": {"ann": "n"}, "solo2": {"bob": "y"}, "solo3": {"cid": "n"}, "none": {},
                  "skipped": {"ann": "y", "bob": None}})
    r0, r1 = strict(agreement, base, ["y", "n"]), strict(agreement, extra, ["y", "n"])
    assert r1["n_items"] == 10
    assert r1["annotators"] == ["ann", "bob"]  # cid rated only a single-rater item
    for key in ("percent_agreement", "cohen_kappa", "fleiss_kappa", "krippendorff_alpha", "per_class"):
        assert r1[key] == r0[key]


# ---------------------------------------------------------------------------------------------
# Fleiss' kappa


FLEISS_TABLE = [  # Fleiss (1971) as on Wikipedia: 10 subjects, 14 raters, 5 categories; kappa = 0.210
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]


def ratings_from_table(table, cats):
    """Give each subject's counts to raters r0, r1, ... in category order."""
    out = {}
    for i, row in enumerate(table):
        vals = [c for c, k in zip(cats, row) for _ in range(k)]
        out[f"s{i}"] = {f"r{j}": v for j, v in enumerate(vals)}
    return out


def test_fleiss_kappa_on_fleiss_1971_table():
    cats = ["c1", "c2", "c3", "c4", "c5"]
    res = strict(agreement, ratings_from_table(FLEISS_TABLE, cats), cats)
    assert fleiss_textbook(FLEISS_TABLE) == pytest.approx(0.2099, abs=1e-4)
    assert res["fleiss_kappa"] == pytest.approx(fleiss_textbook(FLEISS_TABLE))
    assert round(res["fleiss_kappa"], 3) == 0.210
    assert res["n_items"] == 10 and res["n_annotators"] == 14
    assert res["fleiss_raters"] == 14 and res["fleiss_n_items"] == 10
    assert res["percent_agreement"] == pytest.approx(0.1)  # only subject 1 is unanimous
    # alpha on complete data, checked against the coincidence formula
    units = [[c for c, k in zip(cats, row) for _ in range(k)] for row in FLEISS_TABLE]
    assert res["krippendorff_alpha"] == pytest.approx(alpha_nominal_textbook(units))
    # per class: one-vs-rest 2-column tables
    for j, c in enumerate(cats):
        binary = [[row[j], 14 - row[j]] for row in FLEISS_TABLE]
        assert res["per_class"][c]["fleiss_kappa"] == pytest.approx(fleiss_textbook(binary))
        assert res["per_class"][c]["n"] == sum(row[j] > 0 for row in FLEISS_TABLE)


def test_fleiss_uses_items_with_the_modal_number_of_raters():
    three = {  # six items rated by three people
        "a": {"p": "x", "q": "x", "r": "x"}, "b": {"p": "y", "q": "y", "r": "x"},
        "c": {"p": "y", "q": "y", "r": "y"}, "d": {"p": "x", "q": "y", "r": "x"},
        "e": {"p": "x", "q": "x", "r": "y"}, "f": {"p": "y", "q": "y", "r": "y"},
    }
    two = {"g": {"p": "x", "q": "y"}, "h": {"q": "y", "r": "x"}}  # and two by two people
    res = strict(agreement, {**three, **two}, ["x", "y"])
    assert res["fleiss_raters"] == 3 and res["fleiss_n_items"] == 6
    table = [[sum(v == c for v in rs.values()) for c in ("x", "y")] for rs in three.values()]
    assert res["fleiss_kappa"] == pytest.approx(fleiss_textbook(table))
    # alpha uses every item, missing ratings included
    units = [list(rs.values()) for rs in {**three, **two}.values()]
    assert res["krippendorff_alpha"] == pytest.approx(alpha_nominal_textbook(units))
    # pairwise Cohen on each pair's common items
    by_pair = {(p["a"], p["b"]): p for p in res["pairwise_cohen"]}
    assert set(by_pair) == {("p", "q"), ("p", "r"), ("q", "r")}
    allr = {**three, **two}
    for (a, b), p in by_pair.items():
        common = [rs for rs in allr.values() if a in rs and b in rs]
        assert p["n"] == len(common)
        ya, yb = [rs[a] for rs in common], [rs[b] for rs in common]
        assert p["kappa"] == pytest.approx(cohen_textbook(ya, yb))
    assert res["cohen_kappa"] is None


# ---------------------------------------------------------------------------------------------
# Krippendorff's alpha with missing ratings


def test_krippendorff_alpha_with_missing_values_published_example():
    nan = None  # the krippendorff package's docstring example (nominal alpha = 0.691358)
    rows = [
        [nan, nan, nan, nan, nan, 3, 4, 1, 2, 1, 1, 3, 3, nan, 3],
        [1, nan, 2, 1, 3, 3, 4, 3, nan, nan, nan, nan, nan, nan, nan],
        [nan, nan, 2, 1, 3, 4, 4, nan, 2, 1, 1, 3, 3, nan, 4],
    ]
    cols = {f"coder{k}": [None if v is None else f"v{v}" for v in row] for k, row in enumerate(rows)}
    res = strict(agreement, from_columns(cols), ["v1", "v2", "v3", "v4"])
    assert res["krippendorff_alpha"] == pytest.approx(0.691358, abs=1e-6)
    units = [[cols[a][j] for a in cols if cols[a][j] is not None] for j in range(15)]
    assert res["krippendorff_alpha"] == pytest.approx(alpha_nominal_textbook(units))
    assert res["n_items"] == sum(len(u) >= 2 for u in units) == 12
    # per class: the same formula on the one-vs-rest recoding
    for c in ("v1", "v2", "v3", "v4"):
        binary = [[int(v == c) for v in u] for u in units]
        assert res["per_class"][c]["krippendorff_alpha"] == pytest.approx(alpha_nominal_textbook(binary))
        assert res["per_class"][c]["n"] == sum(c in u for u in units if len(u) >= 2)
    json.dumps(res, allow_nan=False)


def test_values_outside_classes_are_kept_not_dropped():
    res = strict(agreement, from_columns({"a": ["x", "x", "z", "y"], "b": ["x", "y", "z", "y"]}), ["x", "y"])
    assert list(res["per_class"]) == ["x", "y", "z"]
    assert res["per_class"]["z"]["n"] == 1
    A, B = ["x", "x", "z", "y"], ["x", "y", "z", "y"]
    assert res["cohen_kappa"] == pytest.approx(cohen_textbook(A, B))


# ---------------------------------------------------------------------------------------------
# multi-label


def test_multilabel_agreement():
    ratings = {
        "i1": {"a": ["cat", "dog"], "b": ("dog", "cat")},  # same set, other order
        "i2": {"a": ["cat"], "b": ["cat", "dog"]},
        "i3": {"a": [], "b": []},
        "i4": {"a": ["dog"], "b": ["dog"]},
        "i5": {"a": ["cat"], "b": []},
        "i6": {"a": ["cat"]},  # one rater: ignored
    }
    tags = ["cat", "dog"]
    res = strict(agreement, ratings, tags, multilabel=True)
    assert res["n_items"] == 5
    assert res["percent_agreement"] == pytest.approx(3 / 5)
    items = [ratings[i] for i in ("i1", "i2", "i3", "i4", "i5")]
    per_tag_alpha = {}
    for t in tags:
        units = [[int(t in rs["a"]), int(t in rs["b"])] for rs in items]
        per_tag_alpha[t] = alpha_nominal_textbook(units)
        assert res["per_class"][t]["krippendorff_alpha"] == pytest.approx(per_tag_alpha[t])
        table = [[sum(u), 2 - sum(u)] for u in units]
        assert res["per_class"][t]["fleiss_kappa"] == pytest.approx(fleiss_textbook(table))
        assert res["per_class"][t]["n"] == sum(any(u) for u in units)
    assert res["krippendorff_alpha"] == pytest.approx(sum(per_tag_alpha.values()) / 2)
    kappas = [cohen_textbook([int(t in rs["a"]) for rs in items], [int(t in rs["b"]) for rs in items])
              for t in tags]
    assert res["cohen_kappa"] == pytest.approx(sum(kappas) / 2)
    assert res["pairwise_cohen"][0]["n"] == 5
    assert "mean" in res["method"]
    json.dumps(res, allow_nan=False)


def test_multilabel_mean_skips_undefined_tags():
    # "bird" is never used: its per-tag values are None and do not drag the mean down
    ratings = {f"i{k}": {"a": v, "b": w} for k, (v, w) in
               enumerate([(["cat"], ["cat"]), ([], []), (["cat"], ["cat"]), ([], [])])}
    res = strict(agreement, ratings, ["cat", "bird"], multilabel=True)
    assert res["per_class"]["bird"]["krippendorff_alpha"] is None
    assert res["krippendorff_alpha"] == pytest.approx(1.0)
    assert res["cohen_kappa"] == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------
# consensus


def test_consensus_single_label():
    assert consensus(["cat", "dog", "cat"]) == ("cat", False)
    assert consensus(["cat", "dog"]) == (None, True)
    assert consensus(["cat", "dog", "bird", "bird", "cat"]) == (None, True)
    assert consensus(["cat"]) == ("cat", False)
    assert consensus([]) == (None, False)
    assert consensus(["cat", None, None]) == ("cat", False)  # unrated entries do not vote


def test_consensus_multilabel():
    assert consensus([["cat", "dog"], ["dog"], ["dog", "cat", "bird"]], multilabel=True) == (("cat", "dog"), False)
    assert consensus([["cat"], ["dog"]], multilabel=True) == (None, True)  # each tag by exactly half
    assert consensus([["cat"], ["cat", "dog"], ["cat"], []], multilabel=True) == (("cat",), False)  # 3/4, 1/4
    assert consensus([["cat"], ["cat", "dog"], ["cat", "dog"], []], multilabel=True) == (None, True)  # dog 2/4
    assert consensus([["dog"], [], []], multilabel=True) == ((), False)
    assert consensus([("b", "a"), ["a", "b"], ["a"]], multilabel=True) == (("a", "b"), False)


# ---------------------------------------------------------------------------------------------
# confusion between two annotators


def test_annotator_confusion_counts():
    A = ["cat", "cat", "dog", "dog", "bird", "cat", None]
    B = ["cat", "dog", "dog", "cat", "bird", "cat", "dog"]
    ratings = from_columns({"a": A, "b": B})
    ratings["only_c"] = {"c": "cat"}
    res = annotator_confusion(ratings, "a", "b", ["cat", "dog", "bird"])
    assert res["labels"] == ["cat", "dog", "bird"]
    assert res["n"] == 6
    expected = [[0] * 3 for _ in range(3)]
    idx = {"cat": 0, "dog": 1, "bird": 2}
    for x, y in zip(A, B):
        if x is not None and y is not None:
            expected[idx[x]][idx[y]] += 1
    assert res["matrix"] == expected == [[2, 1, 0], [1, 1, 0], [0, 0, 1]]
    json.dumps(res)
    assert annotator_confusion(ratings, "a", "nobody", ["cat", "dog"]) == {
        "labels": ["cat", "dog"], "matrix": [[0, 0], [0, 0]], "n": 0}


def test_annotator_confusion_rejects_multilabel():
    ratings = {"i": {"a": ["cat"], "b": ["dog"]}}
    with pytest.raises(ValueError, match="single-label"):
        annotator_confusion(ratings, "a", "b", ["cat", "dog"])
    with pytest.raises(ValueError, match="single-label"):
        annotator_confusion({}, "a", "b", ["cat"], multilabel=True)


# ---------------------------------------------------------------------------------------------
# imports stay light


def test_module_import_does_not_import_the_statistics_libraries():
    code = (
        "import sys\n"
        "import alworkbench.labels.agreement\n"
        "heavy = ['sklearn', 'statsmodels', 'krippendorff']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = {m for m in out.stdout.strip().split(",") if m}
    assert not loaded & {"sklearn", "statsmodels", "krippendorff"}, loaded
