"""Data-parallel training of the course's GPT with ``torch.distributed`` (DistributedDataParallel).

One process per GPU (or per CPU core here), started by ``torchrun``:

    torchrun --standalone --nproc_per_node 2 -m helpers.distributed --steps 50 --batch-size 16

Every process builds the same model from the same seed and draws the same global batch from the
same random generator, then keeps only its own ``1/world_size`` share of the windows. During the
backward pass DDP averages the gradients of all processes (an all-reduce), so every process holds
the gradient of the whole global batch and applies the same update: the copies never drift apart.

    global batch = per-process micro-batch x processes x accumulation steps

The backend is ``gloo`` on the CPU and ``nccl`` on CUDA GPUs. ``launch`` starts ``torchrun`` from
Python (for notebooks and tests) and returns what rank 0 measured; ``train_here`` runs the same code in the
calling process as a group of one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from helpers.data import get_batch
from helpers.model import GPT, GPTConfig
from helpers.runtime import autocast, seed_everything, synchronize
from helpers.train import make_optimizer

BACKENDS = ("gloo", "nccl")
# torchrun sets these for every process it starts
_LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def _positive_int(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def micro_batch(batch_size: int, world_size: int, grad_accum: int = 1) -> int:
    """Windows each process runs per forward pass: ``batch_size / (world_size * grad_accum)``.

    ``batch_size`` is the global batch of one optimiser step; it must split evenly, otherwise the
    processes would average unequal shares and the result would no longer be the full-batch gradient.
    """
    for name, value in (("batch_size", batch_size), ("world_size", world_size), ("grad_accum", grad_accum)):
        _positive_int(name, value)
    if batch_size % (world_size * grad_accum):
        raise ValueError(f"world_size={world_size} processes x grad_accum={grad_accum} micro-batches must divide "
                         f"the global batch_size={batch_size}; use a batch_size that is a multiple of "
                         f"{world_size * grad_accum}")
    return batch_size // (world_size * grad_accum)


def default_backend(device: torch.device | str) -> str:
    """``nccl`` for CUDA devices (GPU to GPU without the CPU), ``gloo`` for everything else."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def init_process_group(backend: str | None = None) -> tuple[int, int, torch.device]:
    """Join the process group that ``torchrun`` set up; returns ``(rank, world_size, device)``.

    With CUDA each process takes the GPU of its ``LOCAL_RANK`` (its index on its own machine).
    """
    missing = [name for name in _LAUNCH_VARS if name not in os.environ]
    if missing:
        raise RuntimeError(f"environment variables {missing} are not set: start this with torchrun "
                           "(e.g. torchrun --standalone --nproc_per_node 2 -m helpers.distributed)")
    local_rank = int(os.environ["LOCAL_RANK"])
    if torch.cuda.is_available() and backend in (None, "nccl"):
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    backend = backend or default_backend(device)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size(), device


class _Loss(nn.Module):
    """DDP hooks its gradient averaging into ``forward``; this makes the model's loss the forward pass."""

    def __init__(self, model: GPT):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.model.loss(x, y)


def flat_grad(model: nn.Module) -> torch.Tensor:
    """All gradients of ``model`` as one vector (on the CPU), in parameter order."""
    return torch.cat([p.grad.detach().flatten().cpu() for p in model.parameters() if p.grad is not None])


def full_batch_gradient(config: GPTConfig, x: torch.Tensor, y: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The reference: one process, the model built from ``seed``, the gradient of the mean loss on ``x, y``."""
    seed_everything(seed)
    model = GPT(config)
    model.loss(x, y).backward()
    return flat_grad(model)


def train_ddp(config: GPTConfig, tokens: torch.Tensor, steps: int, batch_size: int, grad_accum: int = 1,
              lr: float = 3e-3, optimizer: str = "adamw", seed: int = 0, amp: bool = True) -> dict[str, Any]:
    """Train ``GPT(config)`` data-parallel inside an initialised process group (see module docstring).

    ``batch_size`` is the global batch per optimiser step. Returns on every rank: the mean loss of
    each step over all processes, the seconds of each step, the gradient of the first step after the
    all-reduce (before the update) and whether the parameters agree on all ranks at the end.
    """
    rank, world = dist.get_rank(), dist.get_world_size()
    _positive_int("steps", steps)
    micro = micro_batch(batch_size, world, grad_accum)
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    seed_everything(seed)  # the same initial weights in every process (DDP also broadcasts rank 0's)
    model = GPT(config).to(device)
    ddp = DistributedDataParallel(_Loss(model), device_ids=[device.index] if device.type == "cuda" else None)
    opt = make_optimizer(model, optimizer, lr)
    batches = torch.Generator().manual_seed(seed + 1)  # the same global batches in every process
    losses, seconds, first_grad = [], [], None
    for step in range(steps):
        synchronize(device)
        t0 = time.perf_counter()
        x, y = get_batch(tokens, batch_size, config.block_size, batches)  # (B, T) global, on the CPU
        mine = slice(rank * micro * grad_accum, (rank + 1) * micro * grad_accum)  # this process's share
        xs, ys = x[mine].to(device).split(micro), y[mine].to(device).split(micro)
        total = torch.zeros((), device=device)
        for i, (xb, yb) in enumerate(zip(xs, ys)):
            # average over the processes only after the last micro-batch: one all-reduce per step
            sync = contextlib.nullcontext() if i == grad_accum - 1 else ddp.no_sync()
            with sync:
                with autocast(device, amp):
                    loss = ddp(xb, yb) / grad_accum
                loss.backward()
            total += loss.detach()
        if step == 0:
            first_grad = flat_grad(model)
        opt.step()
        opt.zero_grad(set_to_none=True)
        dist.all_reduce(total)  # for the log only: the mean loss over every process's share
        losses.append(total.item() / world)
        synchronize(device)
        seconds.append(time.perf_counter() - t0)
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    gathered = [torch.empty_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    in_sync = all(torch.equal(g, flat) for g in gathered)
    timed = seconds[1:] or seconds  # the first step also pays for allocation and the first messages
    tokens_per_step = batch_size * config.block_size
    return {"world_size": world, "backend": dist.get_backend(), "device": str(device), "batch_size": batch_size,
            "micro_batch": micro, "grad_accum": grad_accum, "steps": steps, "losses": losses, "seconds": seconds,
            "tokens_per_s": tokens_per_step * len(timed) / sum(timed), "first_grad": first_grad,
            "params_in_sync": in_sync}


def train_here(config: GPTConfig, tokens: torch.Tensor, steps: int, batch_size: int, grad_accum: int = 1,
               lr: float = 3e-3, seed: int = 0, threads: int = 1) -> dict[str, Any]:
    """``train_ddp`` in this very process, as a process group of one: the same DDP code path (gloo backend, the
    all-reduce of one process) without starting a launcher or a new Python process, which for a short run
    costs more than the training. The result is that of ``launch(1, ...)``. Uses ``threads`` CPU threads
    while it runs and restores the thread count after.
    """
    _positive_int("threads", threads)
    micro_batch(batch_size, 1, grad_accum)
    if dist.is_initialized():
        raise RuntimeError("a process group is already initialised in this process; train_here makes its own")
    before = torch.get_num_threads()
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    torch.set_num_threads(threads)
    try:
        return train_ddp(config, tokens, steps, batch_size, grad_accum, lr, seed=seed)
    finally:
        torch.set_num_threads(before)
        dist.destroy_process_group()


def launch(nproc: int, config: GPTConfig, tokens: torch.Tensor, steps: int, batch_size: int, grad_accum: int = 1,
           lr: float = 3e-3, seed: int = 0, threads: int = 1, timeout: float = 300) -> dict[str, Any]:
    """Run ``train_ddp`` in ``nproc`` processes started by ``torchrun`` on this machine; rank 0's result.

    Each process uses ``threads`` CPU threads. Bad sizes are refused here, before any process starts.
    """
    _positive_int("nproc", nproc)
    _positive_int("threads", threads)
    micro_batch(batch_size, nproc, grad_accum)
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(tokens.clone(), Path(tmp) / "tokens.pt")  # a slice would save its whole storage
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "helpers.distributed", "--tokens", str(Path(tmp) / "tokens.pt"),
               "--config", json.dumps(config.to_dict()), "--steps", str(steps), "--batch-size", str(batch_size),
               "--grad-accum", str(grad_accum), "--lr", str(lr), "--seed", str(seed), "--out", str(Path(tmp) / "out.pt")]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        root = str(Path(__file__).resolve().parents[1])  # the processes import helpers from here too
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"torchrun with {nproc} process(es) failed (exit {done.returncode}):\n"
                               f"{done.stderr[-3000:]}")
        return torch.load(Path(tmp) / "out.pt")


def main(argv: Sequence[str] | None = None) -> None:
    """Command line for ``torchrun ... -m helpers.distributed``: train and (rank 0) save the result."""
    parser = argparse.ArgumentParser(prog="torchrun ... -m helpers.distributed", description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", default=None, help="a .pt file with a 1-D tensor of token ids "
                        "(default: random tokens, enough to measure speed)")
    parser.add_argument("--config", default="{}", help="GPTConfig fields as JSON, e.g. '{\"n_layer\": 2}'")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16, help="global batch of one optimiser step")
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", choices=BACKENDS, default=None, help="default: nccl on CUDA, else gloo")
    parser.add_argument("--out", default=None, help="where rank 0 saves its result (torch.save)")
    args = parser.parse_args(argv)
    fields: Mapping[str, Any] = json.loads(args.config)
    config = GPTConfig(**fields)
    rank, world, _ = init_process_group(args.backend)
    micro_batch(args.batch_size, world, args.grad_accum)  # every rank fails the same way, before training
    try:
        if args.tokens is not None:
            tokens = torch.load(args.tokens)
        else:
            tokens = torch.randint(config.vocab_size, (100_000,), generator=torch.Generator().manual_seed(args.seed))
        result = train_ddp(config, tokens, args.steps, args.batch_size, args.grad_accum, args.lr, seed=args.seed)
        if rank == 0:
            print(f"{world} process(es), {result['backend']}: {result['tokens_per_s']:,.0f} tokens/s, "
                  f"final loss {result['losses'][-1]:.3f}")
            if args.out is not None:
                torch.save(result, args.out)
        dist.barrier()  # every rank done (rank 0 has saved) before any closes its connections to the others
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
