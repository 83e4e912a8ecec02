"""Splitting ``sdfuse extract`` over several processes or GPUs launched by ``torchrun``.

``torchrun --nproc-per-node N -m sdfuse.cli extract ...`` starts N ranks and sets RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR and MASTER_PORT. Every rank builds the same sorted list of unique images
and extracts only its own slice ``images[rank::world]`` into the shared feature cache, whose
entries are written atomically (temporary file + rename), so ranks never read each other's partial
files. The ranks meet at a barrier at the end, so when rank 0 returns every entry exists. Without
torchrun (no WORLD_SIZE, or WORLD_SIZE=1) this is a single process extracting everything.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from datetime import timedelta
from typing import Iterator, Sequence, TypeVar

from ..errors import ConfigError

T = TypeVar("T")

TIMEOUT_ENV = "SDFUSE_SHARD_TIMEOUT_S"
"""Seconds a rank waits at the final barrier for the slowest rank (default 12 h)."""
DEFAULT_TIMEOUT_S = 12 * 3600


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as error:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer") from error


def rank_and_world() -> tuple[int, int]:
    """(rank, world size): from torch.distributed when it is initialised, else from the RANK and
    WORLD_SIZE environment variables that torchrun sets, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    rank, world_size = _env_int("RANK", 0), _env_int("WORLD_SIZE", 1)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"RANK={rank} and WORLD_SIZE={world_size} do not describe a rank of the run "
                          f"(need 0 <= RANK < WORLD_SIZE)")
    return rank, world_size


def shard_images(images: Sequence[T], rank: int | None = None, world_size: int | None = None) -> list[T]:
    """This rank's share of ``images``: every ``world_size``-th image of the sorted, de-duplicated
    list, starting at ``rank``. The slices of ranks 0 … world_size − 1 are disjoint and cover the
    list; they depend only on the list, never on the cache's state or on timing."""
    if rank is None or world_size is None:
        current_rank, current_world = rank_and_world()
        rank = current_rank if rank is None else rank
        world_size = current_world if world_size is None else world_size
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"rank {rank} is not a rank of a world of {world_size}")
    ordered = sorted(dict.fromkeys(images), key=os.fspath)
    return ordered[rank::world_size]


def barrier() -> None:
    """Wait until every rank gets here; a no-op in a single process."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    if dist.get_backend() == "nccl":
        import torch

        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


@contextmanager
def distributed(backend: str | None = None) -> Iterator[tuple[int, int]]:
    """Join the torchrun process group (if launched by torchrun) for the body, yielding (rank, world size).

    The group is created from the environment (``env://``) with NCCL when CUDA is available and
    gloo otherwise; on CUDA each rank uses the GPU ``LOCAL_RANK``. On normal exit all ranks meet
    at a barrier and the group is destroyed again (only if this call created it). A single process
    yields (0, 1) and touches nothing.
    """
    import torch
    import torch.distributed as dist

    rank, world_size = rank_and_world()
    created = False
    if world_size > 1 and not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(_env_int("LOCAL_RANK", 0))
        chosen = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        dist.init_process_group(chosen, init_method="env://", rank=rank, world_size=world_size,
                                timeout=timedelta(seconds=_env_int(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)))
        created = True
    try:
        yield rank, world_size
        barrier()
    finally:
        if created:
            dist.destroy_process_group()
