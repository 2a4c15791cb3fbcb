"""A class taxonomy: a tree of named groups whose leaves are the classes a single-label head trains on.

Written in ``alwb.yaml`` as nested mappings and lists, any depth::

    taxonomy:
      clothing:
        top: [T-shirt/top, Shirt, Pullover, Coat, Dress]
        bottom: [Trouser]
      footwear: [Sandal, Sneaker, Ankle boot]
      accessory: [Bag]

A mapping is a group of named children; a list holds leaves (strings) or groups (one-key mappings); a key with no
value (``Bag:``) is a leaf. Every name is unique in the whole tree, so a leaf names its path.

Levels: level 1 holds the top groups, level ``k`` the nodes at depth ``k``. A leaf shallower than the deepest level
stands for itself at every level below it (``accessory > Bag`` in a three-level tree is ``Bag`` at level 3), so
every item has exactly one node per level.

Predictions are made consistent with the tree top-down: a node's probability is the sum of its leaves'
probabilities; level 1 predicts the most probable top group, and each further level the most probable child of
the node predicted above it (:meth:`Taxonomy.predict_paths`). The predicted leaf is the last level's node, so a
prediction never contradicts the tree: its ancestors are the predicted ancestors.

Pure Python and numpy only (no torch, no widgets).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from ..errors import ConfigError
from ..names import check_name

#: how a path is written for people (breadcrumbs, CLI, error messages)
PATH_SEP = " > "


def level_name(k: int) -> str:
    """The name of level ``k`` (1-based) in reports, exports and FiftyOne fields."""
    return f"level_{k}"


class Taxonomy:
    """A validated tree. ``leaves`` in declaration order (depth first) are the project's classes."""

    def __init__(self, raw: Any, key: str = "taxonomy", multilabel: bool = False):
        self.key = key
        #: a tag tree (``tags:`` as a nested mapping): every node is a tag; else the leaves are single-label classes
        self.multilabel = bool(multilabel)
        self._children: dict[Optional[str], list[str]] = {None: []}  # None: the root
        self._parent: dict[str, Optional[str]] = {}
        self._where: dict[str, str] = {}  # name -> its path, for "appears twice" errors
        if not isinstance(raw, (dict, list)):
            raise ConfigError(f"config key '{key}' must be a mapping of groups (e.g. clothing: [shirt, coat]), "
                              f"got {type(raw).__name__}")
        self._add_children(None, raw, ())
        self.leaves: tuple[str, ...] = tuple(n for n in self._parent if not self._children.get(n))
        if multilabel:
            bad = next((n for n in self._parent if "/" in n), None)
            if bad is not None:
                raise ConfigError(f"config key '{key}': tag {bad!r} holds '/': in a tag tree the nesting says the "
                                  f"parent; write the last part only")
        elif len(self.leaves) < 2:
            raise ConfigError(f"config key '{key}' needs at least 2 leaves (classes), got {len(self.leaves)}")
        self._paths = {n: self._path_of(n) for n in self._parent}
        self.depth = max(len(self._paths[leaf]) for leaf in self.leaves)

    # -- parsing --------------------------------------------------------------------------------------
    def _add(self, parent: Optional[str], name: Any, value: Any, trail: tuple) -> None:
        where = PATH_SEP.join(trail) if trail else "the top level"
        name = check_name(name, self.key, where=where if trail else None)
        if name in self._parent:
            raise ConfigError(f"config key '{self.key}': name {name!r} appears twice (under {self._where[name]} and "
                              f"under {where}); every node of the taxonomy needs its own name")
        self._parent[name] = parent
        self._where[name] = where
        self._children.setdefault(parent, []).append(name)
        self._children[name] = []
        if value is not None:
            if isinstance(value, (dict, list)) and not value:
                raise ConfigError(f"config key '{self.key}': group {PATH_SEP.join(trail + (name,))!r} is empty: give "
                                  f"it children, or make it a leaf (write `{name}:` with no value, or list it)")
            self._add_children(name, value, trail + (name,))

    def _add_children(self, parent: Optional[str], raw: Any, trail: tuple) -> None:
        where = PATH_SEP.join(trail) if trail else "the top level"
        if isinstance(raw, dict):
            if not raw:
                raise ConfigError(f"config key '{self.key}' is empty: give it groups and leaves")
            for name, value in raw.items():
                self._add(parent, name, value, trail)
        elif isinstance(raw, list):
            if not raw:
                raise ConfigError(f"config key '{self.key}' is empty: give it groups and leaves")
            for x in raw:
                if isinstance(x, dict):
                    for name, value in x.items():
                        self._add(parent, name, value, trail)
                elif isinstance(x, list):
                    raise ConfigError(f"config key '{self.key}': {where} holds a list inside a list ({x!r}): give "
                                      "the inner group a name (name: [a, b])")
                else:
                    self._add(parent, x, None, trail)
        else:
            raise ConfigError(f"config key '{self.key}': group {where!r} must hold a mapping or a list of names, got "
                              f"{raw!r}")

    def _path_of(self, name: str) -> tuple[str, ...]:
        out = [name]
        while self._parent[out[-1]] is not None:
            out.append(self._parent[out[-1]])  # type: ignore[arg-type]
        return tuple(reversed(out))

    # -- shape ----------------------------------------------------------------------------------------
    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(self._parent)

    def children(self, node: Optional[str] = None) -> tuple[str, ...]:
        """Children of ``node`` in declaration order (``None``: the top groups)."""
        if node is not None and node not in self._parent:
            raise KeyError(node)
        return tuple(self._children.get(node, ()))

    def is_leaf(self, node: str) -> bool:
        return node in self._parent and not self._children.get(node)

    def path(self, node: str) -> tuple[str, ...]:
        """Root-to-node names: ``path("Shirt") == ("clothing", "top", "Shirt")``."""
        try:
            return self._paths[node]
        except KeyError:
            raise KeyError(node) from None

    def at_level(self, leaf: str, k: int) -> str:
        """The node of ``leaf`` at level ``k`` (1-based); a shallower leaf stands for itself."""
        p = self.path(leaf)
        return p[min(k, len(p)) - 1]

    def levels(self, leaf: str) -> tuple[str, ...]:
        """One node per level (``depth`` of them) for a leaf."""
        return tuple(self.at_level(leaf, k) for k in range(1, self.depth + 1))

    def level_nodes(self, k: int) -> tuple[str, ...]:
        """The nodes of level ``k`` in tree order (shallower leaves carried down)."""
        return tuple(dict.fromkeys(self.at_level(leaf, k) for leaf in self.leaves))

    def level_names(self) -> list[str]:
        return [level_name(k) for k in range(1, self.depth + 1)]

    def to_dict(self, node: Optional[str] = None) -> dict:
        """The tree as written back to ``alwb.yaml``: nested mappings; a group whose children are all leaves as a
        list of names; a leaf beside groups maps to None."""
        out: dict = {}
        for c in self.children(node):
            kids = self.children(c)
            if not kids:
                out[c] = None
            elif all(self.is_leaf(k) for k in kids):
                out[c] = list(kids)
            else:
                out[c] = self.to_dict(c)
        return out

    def to_json(self) -> dict:
        """The tree for the widget: {"children": {node: [...]}, "paths": {node: [...]}, "leaves": [...]}."""
        return {"roots": list(self.children(None)),
                "children": {n: list(c) for n, c in self._children.items() if n is not None and c},
                "paths": {n: list(p) for n, p in self._paths.items()},
                "leaves": list(self.leaves), "nodes": list(self.nodes), "depth": self.depth,
                "multilabel": self.multilabel}

    # -- probabilities and predictions ----------------------------------------------------------------
    def _leaf_columns(self, classes: Sequence[str]) -> list[int]:
        classes = list(classes)
        missing = [leaf for leaf in self.leaves if leaf not in classes]
        if missing:
            raise ValueError(f"the model's classes lack taxonomy leaves {missing}")
        return [classes.index(leaf) for leaf in self.leaves]

    def level_proba(self, proba: np.ndarray, classes: Sequence[str], k: int) -> tuple[tuple[str, ...], np.ndarray]:
        """(nodes of level k, (n, len(nodes)) probabilities): leaf probabilities summed up the tree."""
        proba = np.asarray(proba, dtype=np.float64)
        cols = self._leaf_columns(classes)
        nodes = self.level_nodes(k)
        pos = {n: j for j, n in enumerate(nodes)}
        out = np.zeros((len(proba), len(nodes)), dtype=np.float64)
        for leaf, c in zip(self.leaves, cols):
            out[:, pos[self.at_level(leaf, k)]] += proba[:, c]
        return nodes, out

    def node_proba(self, proba: np.ndarray, classes: Sequence[str]) -> dict[str, np.ndarray]:
        """Every node's probability per row: the sum of its leaves' probabilities."""
        proba = np.asarray(proba, dtype=np.float64)
        cols = self._leaf_columns(classes)
        out = {n: np.zeros(len(proba)) for n in self._parent}
        for leaf, c in zip(self.leaves, cols):
            for n in self.path(leaf):
                out[n] += proba[:, c]
        return out

    def predict_paths(self, proba: np.ndarray, classes: Sequence[str]) -> list[tuple[str, ...]]:
        """Top-down, tree-consistent predictions: one node per level for each row (see the module docstring).
        Ties go to the node declared first."""
        idx = self._predict_level_indices(proba, classes)
        nodes = [self.level_nodes(k) for k in range(1, self.depth + 1)]
        return [tuple(nodes[k][idx[i, k]] for k in range(self.depth)) for i in range(len(idx))]

    def _predict_level_indices(self, proba: np.ndarray, classes: Sequence[str]) -> np.ndarray:
        """(n, depth) indices into ``level_nodes(k)`` of the top-down prediction."""
        proba = np.asarray(proba, dtype=np.float64)
        out = np.zeros((len(proba), self.depth), dtype=np.int64)
        prev_nodes: tuple = ()
        for k in range(1, self.depth + 1):
            nodes, p = self.level_proba(proba, classes, k)
            if k > 1:
                # a level-k node is allowed where its level-(k-1) node is the one predicted above
                up = np.array([prev_nodes.index(self.path(n)[k - 2] if len(self.path(n)) >= k else n)
                               for n in nodes], dtype=np.int64)
                p = np.where(up[None, :] == out[:, k - 2][:, None], p, -np.inf)
            out[:, k - 1] = p.argmax(axis=1)  # argmax takes the first of equal values: the one declared first
            prev_nodes = nodes
        return out

    def predict_leaves(self, proba: np.ndarray, classes: Sequence[str]) -> np.ndarray:
        """Column index (into ``classes``) of each row's top-down predicted leaf."""
        classes = list(classes)
        last = self.level_nodes(self.depth)
        col = np.array([classes.index(n) for n in last], dtype=np.int64)
        return col[self._predict_level_indices(proba, classes)[:, -1]] if len(proba) else np.zeros(0, np.int64)

    # -- metrics --------------------------------------------------------------------------------------
    def level_accuracy(self, truth: Sequence[Optional[str]], predicted: Sequence[Sequence[str]]) -> list[Optional[float]]:
        """Per level, the share of rows whose predicted node equals the true leaf's node at that level. Rows whose
        truth is None or not a leaf are left out; None when no row is left."""
        rows = [(t, p) for t, p in zip(truth, predicted) if t is not None and t in self._paths and self.is_leaf(t)]
        if not rows:
            return [None] * self.depth
        return [float(np.mean([self.at_level(t, k) == p[k - 1] for t, p in rows])) for k in range(1, self.depth + 1)]

    def level_counts(self, leaves: Sequence[str]) -> list[dict[str, int]]:
        """Coverage per level: how many of ``leaves`` fall under each node of the level (tree order, zeros kept);
        names that are not leaves of this tree are left out."""
        out = [{n: 0 for n in self.level_nodes(k)} for k in range(1, self.depth + 1)]
        for leaf in leaves:
            if leaf in self._paths and self.is_leaf(leaf):
                for k in range(1, self.depth + 1):
                    out[k - 1][self.at_level(leaf, k)] += 1
        return out

    # -- tag trees (multi-label: every node is a tag) -------------------------------------------------
    def close_tags(self, tags: Sequence[str]) -> tuple[str, ...]:
        """The tags plus every ancestor of each in the tree, in tree order (a chosen child implies its parent)."""
        have = set()
        for t in tags:
            have.update(self.path(t))
        return tuple(n for n in self._parent if n in have)

    def tag_depth(self, tag: str) -> int:
        """The level of a tag: 1 for a top node, ``k`` for a node ``k`` deep (no carrying down for tags)."""
        return len(self.path(tag))

    def tag_level_nodes(self, k: int) -> tuple[str, ...]:
        """The tags of level ``k`` (the nodes exactly ``k`` deep), in tree order."""
        return tuple(n for n in self._parent if len(self._paths[n]) == k)

    def tag_levels(self, tags: Sequence[str]) -> list[list[str]]:
        """Per level, the tags of ``tags`` (closed under ancestors) at that depth; names not in the tree dropped."""
        known = [t for t in tags if t in self._paths]
        closed = set(self.close_tags(known))
        return [[n for n in self.tag_level_nodes(k) if n in closed] for k in range(1, self.depth + 1)]

    def consistent_tag_proba(self, proba: np.ndarray, tags: Sequence[str]) -> np.ndarray:
        """Per-tag probabilities made consistent with the tree top-down: p(child) := min(p(child), p(parent)), so
        no tag is more probable than its parent and ``p >= t`` (any one threshold) is closed under ancestors.
        Columns of ``tags`` that are not tree nodes are left as they are."""
        out = np.array(proba, dtype=np.float64, copy=True)
        if out.ndim != 2 or not len(out):
            return out
        col = {t: j for j, t in enumerate(tags)}
        for n in self._parent:  # declaration order is depth first: a parent comes before its children
            par = self._parent[n]
            if par is not None and n in col and par in col:
                out[:, col[n]] = np.minimum(out[:, col[n]], out[:, col[par]])
        return out

    def tag_level_f1(self, truth: Sequence[Optional[Sequence[str]]], predicted: np.ndarray,
                     tags: Sequence[str]) -> list[Optional[float]]:
        """Per level, micro-F1 of the predicted tag decisions (``predicted``: (n, len(tags)) booleans) over the tags
        of that level against the true tag sets (closed under ancestors). Rows whose truth is None are left out;
        None for a level with no true and no predicted tag among the rows left."""
        predicted = np.asarray(predicted, dtype=bool)
        rows = [i for i, t in enumerate(truth) if t is not None]
        col = {t: j for j, t in enumerate(tags)}
        out: list[Optional[float]] = []
        for k in range(1, self.depth + 1):
            nodes = [n for n in self.tag_level_nodes(k) if n in col]
            tp = fp = fn = 0
            for i in rows:
                true = set(self.close_tags([t for t in truth[i] if t in self._paths]))  # type: ignore[union-attr]
                for n in nodes:
                    p, y = bool(predicted[i, col[n]]), n in true
                    tp += p and y
                    fp += p and not y
                    fn += y and not p
            out.append(None if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn))
        return out

    def tag_level_counts(self, tag_sets: Sequence[Sequence[str]]) -> list[dict[str, int]]:
        """Coverage per level for tag sets: how many sets hold each tag of the level (ancestors counted, tree
        order, zeros kept)."""
        out = [{n: 0 for n in self.tag_level_nodes(k)} for k in range(1, self.depth + 1)]
        for tags in tag_sets:
            for n in self.close_tags([t for t in tags if t in self._paths]):
                out[self.tag_depth(n) - 1][n] += 1
        return out

    def __eq__(self, other) -> bool:
        return isinstance(other, Taxonomy) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Taxonomy(depth={self.depth}, leaves={list(self.leaves)!r})"


def format_path(path: Sequence[str]) -> str:
    return PATH_SEP.join(path)
