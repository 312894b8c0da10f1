"""Data-parallel training: two torchrun processes with half the batch each reproduce the full-batch gradient."""

from __future__ import annotations

import pytest
import torch

from helpers import distributed
from helpers.data import get_batch
from helpers.model import GPTConfig

CONFIG = GPTConfig(block_size=32, vocab_size=256, n_layer=2, n_head=2, n_embd=32)


def _tokens() -> torch.Tensor:
    return torch.randint(CONFIG.vocab_size, (5000,), generator=torch.Generator().manual_seed(0))


def test_two_processes_with_half_the_batch_each_give_the_full_batch_gradient():
    tokens, batch, seed = _tokens(), 8, 3
    # two processes x two accumulation steps x micro-batch 2 = global batch 8
    result = distributed.launch(2, CONFIG, tokens, steps=2, batch_size=batch, grad_accum=2, seed=seed)
    assert (result["world_size"], result["micro_batch"], result["backend"]) == (2, 2, "gloo")
    # the reference: the same first batch (train_ddp draws it from seed + 1) in one process, no DDP
    x, y = get_batch(tokens, batch, CONFIG.block_size, torch.Generator().manual_seed(seed + 1))
    full = distributed.full_batch_gradient(CONFIG, x, y, seed=seed)
    torch.testing.assert_close(result["first_grad"], full, rtol=1e-5, atol=1e-7)
    # the comparison can fail: one process's half alone gives a clearly different gradient
    half = distributed.full_batch_gradient(CONFIG, x[:4], y[:4], seed=seed)
    assert (half - full).norm() > 0.05 * full.norm()
    assert result["params_in_sync"], "after the updates every process must hold the same weights"
    assert len(result["losses"]) == 2 and all(loss > 0 for loss in result["losses"])


def test_a_world_size_that_does_not_divide_the_batch_is_refused():
    assert distributed.micro_batch(16, 2, 4) == 2
    with pytest.raises(ValueError, match=r"world_size=3 .*batch_size=10"):
        distributed.micro_batch(10, 3)
    with pytest.raises(ValueError, match=r"world_size=2 .*grad_accum=3.*batch_size=8"):
        distributed.launch(2, CONFIG, _tokens(), steps=1, batch_size=8, grad_accum=3)  # before any process starts
    with pytest.raises(ValueError, match="world_size must be a positive int, got 0"):
        distributed.micro_batch(8, 0)


def test_backend_choice_and_a_clear_error_outside_torchrun(monkeypatch):
    assert distributed.default_backend("cpu") == "gloo"
    assert distributed.default_backend("cuda") == "nccl"
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(RuntimeError, match="torchrun"):
        distributed.init_process_group()


def test_one_process_here_trains_as_one_launched_process_and_leaves_nothing_behind():
    import torch.distributed as dist

    tokens, seed, threads = _tokens(), 5, torch.get_num_threads()
    here = distributed.train_here(CONFIG, tokens, steps=3, batch_size=8, grad_accum=2, seed=seed, threads=1)
    assert torch.get_num_threads() == threads and not dist.is_initialized()
    assert (here["world_size"], here["micro_batch"], here["backend"]) == (1, 4, "gloo")
    launched = distributed.launch(1, CONFIG, tokens, steps=3, batch_size=8, grad_accum=2, seed=seed)
    torch.testing.assert_close(here["first_grad"], launched["first_grad"], rtol=1e-6, atol=1e-8)
    assert here["losses"] == pytest.approx(launched["losses"], rel=1e-6)
    x, y = get_batch(tokens, 8, CONFIG.block_size, torch.Generator().manual_seed(seed + 1))
    torch.testing.assert_close(here["first_grad"], distributed.full_batch_gradient(CONFIG, x, y, seed=seed),
                               rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="threads must be a positive int, got 0"):
        distributed.train_here(CONFIG, tokens, steps=1, batch_size=8, threads=0)
    with pytest.raises(ValueError, match=r"grad_accum=3 .*batch_size=8"):
        distributed.train_here(CONFIG, tokens, steps=1, batch_size=8, grad_accum=3)
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:  # a group that is already running here is refused, not replaced
        with pytest.raises(RuntimeError, match="already initialised"):
            distributed.train_here(CONFIG, tokens, steps=1, batch_size=8)
        assert dist.is_initialized()
    finally:
        dist.destroy_process_group()
