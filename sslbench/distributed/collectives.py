"""Who am I in a distributed run, and the collectives every method may use.

The only distributed code a method imports: :func:`gather` (the one all-gather with gradients,
for losses that need the global batch) and the rank queries. In a single process every function
here is the identity or the trivial answer, so methods and the loop run unchanged. Launching,
DDP wrapping and global BatchNorm are in the sibling modules (see :mod:`sslbench.distributed`).
"""

from __future__ import annotations

import warnings

import torch
import torch.distributed as dist

from sslbench.errors import UserError

# torch 2.14 marks torch.distributed.nn.functional.all_gather deprecated in favour of a private
# module (_functional_collectives); it is still the public all_gather with autograd, so keep it
# and do not print the notice at every run.
warnings.filterwarnings("ignore", category=FutureWarning,
                        message=r"torch\.distributed\.nn\.functional\.all_gather is deprecated")


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Rank 0 (or the only process): the one that writes to the store, prints and checkpoints."""
    return rank() == 0


def gather(x: torch.Tensor) -> torch.Tensor:
    """``x`` [n, ...] of every rank concatenated in rank order → [W·n, ...], with gradients
    (``torch.distributed.nn.functional.all_gather``: each rank's rows get back the sum of every
    rank's gradient for them). The identity in a single process. Every rank must pass the same
    shape (equal shards, see :func:`shard`)."""
    if not is_distributed():
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x.contiguous()), dim=0)


def mean_over_ranks(x: torch.Tensor) -> torch.Tensor:
    """The mean of a (detached) tensor over the ranks, e.g. an epoch's loss for the log."""
    if not is_distributed():
        return x
    x = x.detach().clone()
    dist.all_reduce(x)
    return x / world_size()


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank if ``flag`` is true on any (e.g. a stop signal one rank received)."""
    if not is_distributed():
        return flag
    x = torch.tensor(float(flag), device=device)
    dist.all_reduce(x, op=dist.ReduceOp.MAX)
    return bool(x.item())


# ---------------------------------------------------------------------------------------------
# Data: this rank's part of every global batch


def shard(order: torch.Tensor, batch_size: int) -> torch.Tensor:
    """This rank's indices of an epoch's ``order`` (a permutation, identical on every rank):
    step i's global batch is ``order[i·B:(i+1)·B]`` (the last partial batch dropped) and rank r
    takes its r-th contiguous B/W part. Returned in step order, B/W per step."""
    w = world_size()
    steps = order.shape[0] // batch_size
    return order[:steps * batch_size].view(steps, w, batch_size // w)[:, rank()].reshape(-1)


def check_batch_split(batch_size: int, world: int) -> None:
    if batch_size % world:
        raise UserError(f"train.batch_size={batch_size} (the global batch) does not split into "
                        f"{world} workers; use a multiple of {world}")
