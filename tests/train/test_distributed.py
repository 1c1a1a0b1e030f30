"""Sharding cases across ranks."""

from __future__ import annotations

from medwss.train.distributed import rank_info, shard


def test_shard_covers_all_and_balances():
    costs = [100, 5, 5, 5, 90, 10, 1, 1]
    shards = shard(costs, 2)
    assert sorted(i for s in shards for i in s) == list(range(len(costs)))
    loads = [sum(costs[i] for i in s) for s in shards]
    assert abs(loads[0] - loads[1]) <= 10
    assert shard(costs, 2) == shards  # deterministic
    assert shard(costs, 1) == [list(range(len(costs)))]


def test_rank_info_from_env(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS"):
        monkeypatch.delenv(k, raising=False)
    assert (rank_info().rank, rank_info().world_size) == (0, 1)
    monkeypatch.setenv("SLURM_PROCID", "3")
    monkeypatch.setenv("SLURM_NTASKS", "4")
    assert (rank_info().rank, rank_info().world_size) == (3, 4)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert (rank_info().rank, rank_info().world_size, rank_info().is_main) == (1, 2, False)
