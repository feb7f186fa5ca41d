"""Many processes through torch.distributed, launched by `torchrun` (no launcher of our own).

`torchrun --standalone --nproc_per_node N -m repsearch search ...` sets RANK/WORLD_SIZE; `init`
joins the process group (gloo on CPU, nccl on CUDA) and pins each CUDA rank to its local device.
One process (no WORLD_SIZE) is the world of size 1, and every helper is then a no-op, so the
single-process path is the same code.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist

from repsearch.errors import UserError


def launched() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: str) -> str:
    """Join the process group when launched by torchrun; returns the device this rank uses."""
    if not launched() or dist.is_initialized():
        return device
    if device.startswith("cuda"):
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    backend = "nccl" if device.startswith("cuda") else "gloo"
    dist.init_process_group(backend, **_attempt_store())
    return device


def _attempt_store() -> dict:
    """After `torchrun --max-restarts` restarts the workers, the agent's store still holds the
    previous attempt's addresses (the dead rank's port): the new group would connect to them. Keys
    under a prefix per attempt keep each attempt's group to itself."""
    env = os.environ
    if env.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return {}
    from datetime import timedelta
    world_size, rank_ = int(env["WORLD_SIZE"]), int(env["RANK"])
    store = dist.TCPStore(env["MASTER_ADDR"], int(env["MASTER_PORT"]), world_size, is_master=False,
                          timeout=timedelta(minutes=10))
    prefixed = dist.PrefixStore(f"repsearch/attempt{env.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)
    return {"store": prefixed, "rank": rank_, "world_size": world_size}


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def broadcast(obj):
    """Rank 0's `obj` on every rank (a run directory's path, a flag)."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def main_first(fn):
    """Run fn() on rank 0 while the others wait; if it raised there, the others stop with one line
    (rank 0 reports the cause) instead of waiting at the next collective forever."""
    result, error = None, None
    if is_main():
        try:
            result = fn()
        except BaseException as e:  # re-raised below, after the others know
            error = e
    failed = broadcast(error is not None)
    if error is not None:
        raise error
    if failed:
        raise UserError("rank 0 failed before this rank could start (its error says why)")
    return result


def mine(items: list) -> list:
    """This rank's share of work items: every world()-th one, starting at its rank."""
    return items[rank()::world()]


def shared(jobs: list):
    """Run independent jobs (callables) spread over the ranks, every world()-th one per rank, and
    return every job's result on every rank, in order: N ranks finish N jobs at once instead of
    each computing all of them. A job that raised raises on its rank; the others stop with one line."""
    results = [(i, *_attempt(job)) for i, job in list(enumerate(jobs))[rank()::world()]]
    if dist.is_initialized():
        gathered = [None] * world()
        dist.all_gather_object(gathered, [(i, r, e is not None) for i, r, e in results])
        for _, _, error in results:
            if error is not None:
                raise error
        if any(failed for share in gathered for _, _, failed in share):
            raise UserError("another rank failed in a shared measurement (its error says why)")
        results = [(i, r, None) for share in gathered for i, r, _ in share]
    for _, _, error in results:
        if error is not None:
            raise error
    return [r for _, r, _ in sorted(results, key=lambda t: t[0])]


def _attempt(job) -> tuple:
    try:
        return job(), None
    except Exception as e:  # re-raised by `shared` once the other ranks know
        return None, e


def require_single(command: str) -> None:
    """Commands without a multi-process path refuse torchrun in one line rather than run N copies."""
    if launched():
        raise UserError(f"'repsearch {command}' runs in one process; launch it without torchrun (search, train, "
                        "baseline, run and rounds take torchrun)")


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
