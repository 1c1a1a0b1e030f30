"""k-center greedy (the Coreset of Sener & Savarese, 2018): a fast chunked torch version and a naive reference.

Greedy k-center repeatedly picks the pool point farthest from every point chosen so far (and from
the already-labelled set). The fast version keeps each point's distance to its nearest centre and
updates it with one matrix–vector product per pick (squared distances ``|x|² − 2x·c + |c|²``),
working through the pool in chunks so memory stays bounded, on the GPU when one is present. The
naive version recomputes every distance to every centre at every step, as a first implementation would.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from medwss.errors import InvalidDataError


def _check(features: np.ndarray | torch.Tensor, budget: int, labelled: Sequence[int]) -> int:
    n = len(features)
    if features.ndim != 2:
        raise InvalidDataError(f"features must be (N, D), got shape {tuple(features.shape)}")
    if budget < 0 or budget > n - len(set(labelled)):
        raise InvalidDataError(f"budget {budget} is not within 0..{n - len(set(labelled))} unlabelled points")
    return n


def _device(device: str | torch.device | None) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _first_centre(x: torch.Tensor, allowed: torch.Tensor, how: str, seed: int) -> int:
    pool = allowed.nonzero().flatten()
    if how == "random":
        g = torch.Generator().manual_seed(seed)
        return int(pool[torch.randint(len(pool), (1,), generator=g)])
    if how != "central":
        raise InvalidDataError(f"first_centre must be 'central' or 'random', got '{how}'")
    d = ((x[pool] - x.mean(0)) ** 2).sum(1)  # (P,)
    return int(pool[int(d.argmin())])


@torch.no_grad()
def kcenter_greedy(
    features: np.ndarray | torch.Tensor,
    budget: int,
    labelled: Sequence[int] = (),
    candidates: Sequence[int] | None = None,
    seed: int = 0,
    chunk: int = 65536,
    device: str | torch.device | None = "auto",
    progress: bool = False,
    first_centre: str = "central",
    blas: bool = True,
) -> list[int]:
    """Pick `budget` pool indices by k-center greedy.

    Args:
        features: ``(N, D)`` embeddings of the whole pool.
        budget: Points to pick.
        labelled: Indices already annotated (they are centres from the start, never picked).
        candidates: Indices that may be picked (default: every unlabelled point); others still count as
            points to cover only if labelled.
        seed: Seed of the first centre when it is random.
        chunk: Rows per distance block (bounds memory at ``chunk × D`` floats).
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda``.
        progress: Show a progress bar.
        first_centre: When nothing is labelled: ``central`` (the candidate nearest the mean of all
            features, so a one-slice budget already depends on the metric) or ``random``.
        blas: On the CPU, run the loop through numpy's BLAS (about twice as fast as torch's CPU
            matrix–vector product); False keeps it in torch (the GPU path).

    Returns:
        The picked indices, in the order they were picked.
    """
    n = _check(features, budget, labelled)
    dev = _device(device)
    x = torch.as_tensor(np.asarray(features) if not isinstance(features, torch.Tensor) else features)
    x = x.to(dev, torch.float32)  # (N, D)
    sq = (x * x).sum(1)  # (N,)
    mind = torch.full((n,), float("inf"), device=dev)
    allowed = torch.zeros(n, dtype=torch.bool, device=dev)
    if candidates is None:
        allowed[:] = True
    else:
        allowed[torch.as_tensor(list(candidates), dtype=torch.long, device=dev)] = True
    lab = torch.as_tensor(sorted(set(labelled)), dtype=torch.long, device=dev)
    allowed[lab] = False
    for start in range(0, len(lab), 1024):  # distances to the labelled centres, in blocks of centres
        c = x[lab[start : start + 1024]]  # (M, D)
        csq = sq[lab[start : start + 1024]]
        for r in range(0, n, chunk):
            d = sq[r : r + chunk, None] - 2 * x[r : r + chunk] @ c.T + csq[None]  # (chunk, M)
            mind[r : r + chunk] = torch.minimum(mind[r : r + chunk], d.min(1).values)
    picked: list[int] = []
    if len(lab) == 0 and budget > 0:
        first = _first_centre(x, allowed, first_centre, seed)
        picked.append(first)
        allowed[first] = False
        mind = torch.minimum(mind, (sq - 2 * x @ x[first] + sq[first]).clamp_min(0))
    mind = mind.masked_fill(~allowed, float("-inf"))  # never picked: labelled, picked, not candidates
    steps = tqdm(range(budget - len(picked)), desc="k-center", disable=not progress, leave=False)
    if dev.type == "cpu" and blas:  # BLAS sgemv through numpy reads the features about twice as fast as torch's CPU mv
        return picked + _greedy_numpy(x.numpy(), sq.numpy(), mind.numpy(), steps)
    for _ in steps:
        i = int(mind.argmax())
        picked.append(i)
        for r in range(0, n, chunk):
            d = torch.addmv(sq[r : r + chunk], x[r : r + chunk], x[i], alpha=-2.0).add_(sq[i])  # (chunk,)
            torch.minimum(mind[r : r + chunk], d, out=mind[r : r + chunk])
        mind[i] = float("-inf")
    return picked


def _greedy_numpy(x: np.ndarray, sq: np.ndarray, mind: np.ndarray, steps: Iterable[int]) -> list[int]:
    """The greedy loop on the CPU: one sgemv and a few vector passes per pick (updates `mind` in place)."""
    picked = []
    buf = np.empty_like(sq)
    for _ in steps:
        i = int(mind.argmax())
        picked.append(i)
        np.dot(x, x[i], out=buf)  # (N,)
        buf *= -2.0
        buf += sq
        buf += sq[i]
        np.minimum(mind, buf, out=mind)
        mind[i] = -np.inf
    return picked


def kcenter_naive(
    features: np.ndarray,
    budget: int,
    labelled: Sequence[int] = (),
    candidates: Sequence[int] | None = None,
    seed: int = 0,
    first_centre: str = "central",
) -> list[int]:
    """Reference k-center greedy: every step recomputes the distance of every point to every centre.

    Picks the same points as `kcenter_greedy` (up to float ties), in ``O(N · k² · D)`` instead of ``O(N · k · D)``.
    """
    from scipy.spatial.distance import cdist

    n = _check(features, budget, labelled)
    x = np.asarray(features, dtype=np.float64)
    centres = sorted(set(labelled))
    allowed = np.zeros(n, dtype=bool)
    allowed[list(range(n)) if candidates is None else list(candidates)] = True
    allowed[centres] = False
    picked: list[int] = []
    if not centres and budget > 0:
        first = _first_centre(torch.as_tensor(x), torch.as_tensor(allowed), first_centre, seed)
        picked.append(first)
        centres.append(first)
        allowed[first] = False
    while len(picked) < budget:
        dist = cdist(x, x[centres]).min(1)  # (N,)
        dist[~allowed] = -np.inf
        i = int(np.argmax(dist))
        picked.append(i)
        centres.append(i)
        allowed[i] = False
    return picked


def coverage_radius(features: np.ndarray, centres: Sequence[int]) -> float:
    """The k-center objective: the largest distance from a point to its nearest centre."""
    from scipy.spatial.distance import cdist

    x = np.asarray(features, dtype=np.float64)
    return float(cdist(x, x[list(centres)]).min(1).max()) if len(centres) else float("inf")
