"""Selection strategies by name: which unlabelled slices to annotate next.

Every strategy is ``fn(ctx, budget) -> list[int]`` (pool indices, best first) over a
`SelectionContext`. Uncertainty strategies need the current segmenter; before the first model
exists (round one) they fall back to random selection, as is usual.

| name | what it picks |
|---|---|
| random | uniformly at random |
| entropy | highest mean pixel entropy of the softmax |
| margin | smallest mean margin between the two most probable classes |
| bald | highest mean mutual information over MC-dropout passes (Gal et al., 2017) |
| coreset | k-center greedy on an untrained (randomly initialised) encoder's embedding |
| contrastive_coreset | k-center greedy in the learned contrastive metric, optionally fused with other features |
| typiclust | the most typical slice of each of the largest uncovered k-means clusters (Hacohen et al., 2022) |
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from medwss.active.coreset import kcenter_greedy
from medwss.registry import Registry

Predictor = Callable[[list[int], bool], list[np.ndarray]]
"""Maps pool indices (and an MC-dropout flag) to class probabilities ``(K, H, W)`` per slice."""


@dataclass
class SelectionContext:
    """What a strategy may look at.

    Attributes:
        n: Pool size.
        labelled: Indices already annotated or awaiting annotation (never picked again).
        features: Name (``contrastive``, ``untrained``) → ``(N, D)`` embeddings, computed on first use.
        predict: The current segmenter's predictor (None before the first training).
        seed: Seed of the random choices of this round.
        mc_samples: MC-dropout passes for BALD.
        fuse: Extra feature name → weight, concatenated to the contrastive features (each block L2-normalised).
        device: Where k-center runs (``auto``: the GPU when present).
    """

    n: int
    labelled: list[int]
    features: Callable[[str], np.ndarray]
    predict: Predictor | None = None
    seed: int = 0
    mc_samples: int = 8
    fuse: dict[str, float] = field(default_factory=dict)
    device: str = "auto"

    @property
    def candidates(self) -> list[int]:
        taken = set(self.labelled)
        return [i for i in range(self.n) if i not in taken]


class Strategy(Protocol):
    """A selection strategy: ``fn(ctx, budget) -> pool indices``, best first.

    Contract: `budget` distinct indices of ``ctx.candidates`` (never a labelled one), the same for the
    same ``ctx.seed``; without ``ctx.predict`` (round one) uncertainty strategies fall back to random.
    `tests/test_contracts.py` runs every entry with and without a predictor and checks that.
    """

    def __call__(self, ctx: SelectionContext, budget: int, /) -> list[int]: ...


STRATEGIES: Registry[Strategy] = Registry(
    "strategy", package="medwss.active", marker="register_strategy", plural="strategies"
)
"""Every selection strategy; a module of `medwss.active` that calls `register_strategy` is found on first lookup."""


def register_strategy(name: str) -> Callable[[Strategy], Strategy]:
    """Register a strategy ``fn(ctx, budget) -> list[int]`` under `name` (a decorator)."""
    return STRATEGIES.register(name)


def get_strategy(name: str) -> Strategy:
    """The strategy registered as `name`; `UnknownNameError` (a `ConfigError`) listing the known ones if none."""
    return STRATEGIES.get(name)


@register_strategy("random")
def random_strategy(ctx: SelectionContext, budget: int) -> list[int]:
    rng = np.random.default_rng(ctx.seed)
    return [int(i) for i in rng.choice(ctx.candidates, size=budget, replace=False)]


def _entropy(p: np.ndarray, axis: int = 0) -> np.ndarray:
    return -(p * np.log(np.clip(p, 1e-12, 1.0))).sum(axis)


def _top(scores: np.ndarray, cand: list[int], budget: int) -> list[int]:
    order = np.argsort(-scores, kind="stable")[:budget]
    return [cand[int(i)] for i in order]


def _uncertainty(ctx: SelectionContext, budget: int, score: Callable[[np.ndarray], float]) -> list[int]:
    if ctx.predict is None:
        return random_strategy(ctx, budget)
    cand = ctx.candidates
    probs = ctx.predict(cand, False)
    return _top(np.array([score(p) for p in probs]), cand, budget)


@register_strategy("entropy")
def entropy_strategy(ctx: SelectionContext, budget: int) -> list[int]:
    return _uncertainty(ctx, budget, lambda p: float(_entropy(p).mean()))


@register_strategy("margin")
def margin_strategy(ctx: SelectionContext, budget: int) -> list[int]:
    def neg_margin(p: np.ndarray) -> float:
        top2 = np.sort(p, axis=0)[-2:]  # (2, H, W)
        return -float((top2[1] - top2[0]).mean())

    return _uncertainty(ctx, budget, neg_margin)


@register_strategy("bald")
def bald_strategy(ctx: SelectionContext, budget: int) -> list[int]:
    if ctx.predict is None:
        return random_strategy(ctx, budget)
    cand = ctx.candidates
    runs = [ctx.predict(cand, True) for _ in range(ctx.mc_samples)]  # T × [(K, H, W)]
    scores = []
    for j in range(len(cand)):
        stack = np.stack([r[j] for r in runs])  # (T, K, H, W)
        mutual = _entropy(stack.mean(0)) - _entropy(stack, axis=1).mean(0)  # (H, W)
        scores.append(float(mutual.mean()))
    return _top(np.array(scores), cand, budget)


def _kcenter(ctx: SelectionContext, feats: np.ndarray, budget: int) -> list[int]:
    return kcenter_greedy(feats, budget, labelled=ctx.labelled, seed=ctx.seed, device=ctx.device)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-8)


@register_strategy("coreset")
def coreset_strategy(ctx: SelectionContext, budget: int) -> list[int]:
    return _kcenter(ctx, _unit(ctx.features("untrained")), budget)


@register_strategy("contrastive_coreset")
def contrastive_coreset_strategy(ctx: SelectionContext, budget: int) -> list[int]:
    blocks = [_unit(ctx.features("contrastive"))]
    for name, weight in ctx.fuse.items():
        blocks.append(np.sqrt(weight) * _unit(ctx.features(name)))
    return _kcenter(ctx, np.concatenate(blocks, axis=1), budget)


@register_strategy("typiclust")
def typiclust_strategy(ctx: SelectionContext, budget: int, k_neighbours: int = 20) -> list[int]:
    from sklearn.cluster import KMeans, MiniBatchKMeans
    from sklearn.neighbors import NearestNeighbors

    feats = _unit(ctx.features("contrastive"))
    n_clusters = min(len(ctx.labelled) + budget, len(feats))
    km_cls = KMeans if len(feats) <= 20_000 else MiniBatchKMeans
    assign = km_cls(n_clusters=n_clusters, n_init=3, random_state=ctx.seed).fit_predict(feats)
    labelled = set(ctx.labelled)
    covered = {int(assign[i]) for i in labelled}
    sizes = np.bincount(assign, minlength=n_clusters)
    picked: list[int] = []
    for _ in range(budget):
        open_ = [c for c in range(n_clusters) if c not in covered and sizes[c] > 0]
        if not open_:  # every cluster covered: the largest cluster again
            open_ = [c for c in range(n_clusters) if sizes[c] > 0]
        c = max(open_, key=lambda c: (sizes[c], -c))
        members = [i for i in np.flatnonzero(assign == c) if int(i) not in labelled and int(i) not in picked]
        covered.add(c)
        if not members:
            sizes[c] = 0
            continue
        k = min(k_neighbours, len(members) - 1)
        if k >= 1:
            dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(feats[members]).kneighbors(feats[members])
            typicality = 1.0 / (dist[:, 1:].mean(1) + 1e-8)
            best = members[int(np.argmax(typicality))]
        else:
            best = members[0]
        picked.append(int(best))
    if len(picked) < budget:  # a cluster ran dry: fill at random from the rest
        rest = [i for i in ctx.candidates if i not in picked]
        rng = np.random.default_rng(ctx.seed)
        picked += [int(i) for i in rng.choice(rest, size=budget - len(picked), replace=False)]
    return picked
