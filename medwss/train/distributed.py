"""Sharding cases across ranks: torchrun (RANK/WORLD_SIZE) or SLURM (SLURM_PROCID/SLURM_NTASKS)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RankInfo:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def rank_info() -> RankInfo:
    """Read the rank from torchrun's or SLURM's environment; a single process when neither is set."""
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return RankInfo(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)))
    if "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
        return RankInfo(int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0)))
    return RankInfo()


def shard(costs: list[int], world_size: int) -> list[list[int]]:
    """Split items into `world_size` shards of similar total cost (longest first, to the lightest shard).

    Deterministic: every rank computes the same assignment from the same costs.
    """
    shards: list[list[int]] = [[] for _ in range(world_size)]
    load = np.zeros(world_size)
    for i in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        r = int(np.argmin(load))
        shards[r].append(i)
        load[r] += max(costs[i], 1)
    return [sorted(s) for s in shards]


def init_process_group(info: RankInfo) -> bool:
    """Join the process group (NCCL with GPUs, gloo otherwise) when there are several ranks.

    Returns True if a group was created here (the caller destroys it at the end).
    """
    import torch
    import torch.distributed as dist

    if info.world_size <= 1 or not dist.is_available() or dist.is_initialized():
        return False
    if "MASTER_ADDR" not in os.environ:  # SLURM without torchrun: rendezvous on the first node
        os.environ.setdefault("MASTER_ADDR", os.environ.get("SLURM_LAUNCH_NODE_IPADDR", "127.0.0.1"))
        os.environ.setdefault("MASTER_PORT", "29500")
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend, rank=info.rank, world_size=info.world_size)
    return True


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
