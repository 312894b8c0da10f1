"""helpers.interface: the GPT implements LanguageModel, and a model that is not a GPT but has the same
members passes through the sampler, trainer, LoRA, quantisation, memory and checkpoint tools unchanged."""

from dataclasses import asdict, dataclass

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from helpers.checkpoints import save_checkpoint
from helpers.data import TokenSplits
from helpers.interface import Cache, LanguageModel, ModelConfig
from helpers.lora import apply_lora, trainable_parameters
from helpers.memory import training_memory
from helpers.model import GPT, GPTConfig
from helpers.quantize import quantize_model
from helpers.sampling import SamplingParams, generate, mean_logprob
from helpers.train import TrainConfig, evaluate, train


@dataclass
class BigramConfig:
    vocab_size: int = 12
    block_size: int = 16

    def to_dict(self) -> dict:
        return asdict(self)


class PositionCache:
    """A cache that holds no keys: a bigram model needs only the position, kept for the interface."""

    def __init__(self, batch_size: int):
        self.batch_size, self.pos = batch_size, 0

    def reset(self) -> None:
        self.pos = 0

    def select(self, rows: torch.Tensor) -> None:
        self.batch_size = len(rows)


class BigramLM(nn.Module):
    """Another model family in a few lines: the next token depends on the current one only."""

    def __init__(self, config: BigramConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, 8)
        self.head = nn.Linear(8, config.vocab_size)
        self.gradient_checkpointing = False

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def new_cache(self, batch_size: int, dtype: torch.dtype | None = None) -> PositionCache:
        return PositionCache(batch_size)

    def forward(self, idx: torch.Tensor, cache: PositionCache | None = None) -> torch.Tensor:
        if cache is not None:
            cache.pos += idx.shape[1]
        return self.head(self.embed(idx))  # (B, T, V)

    def loss(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self(idx).flatten(0, 1), targets.flatten(), ignore_index=-100)

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


def _bigram(seed: int = 0) -> BigramLM:
    torch.manual_seed(seed)
    return BigramLM(BigramConfig())


def test_both_kinds_of_model_implement_the_protocols():
    gpt = GPT(GPTConfig(block_size=8, vocab_size=16, n_layer=1, n_head=1, n_embd=8))
    for model in (gpt, _bigram()):
        assert isinstance(model, LanguageModel) and isinstance(model.config, ModelConfig)
        assert isinstance(model.new_cache(2), Cache)
    assert not isinstance(nn.Linear(2, 2), LanguageModel)  # the check is not vacuous
    assert not isinstance(gpt.transformer.wte, LanguageModel)


def test_the_llama_family_implements_the_protocol():
    from helpers.llama import Llama, LlamaConfig

    model = Llama(LlamaConfig(block_size=16, vocab_size=40, n_layer=1, n_embd=16, n_mlp=32, n_head=2, n_kv_head=1))
    assert isinstance(model, LanguageModel) and isinstance(model.config, ModelConfig)
    cache = model.new_cache(2)
    assert isinstance(cache, Cache) and cache.pos == 0 and cache.batch_size == 2
    logits = model(torch.zeros(2, 3, dtype=torch.long), cache=cache)
    assert logits.shape == (2, 3, 40) and cache.pos == 3
    cache.select(torch.tensor([1]))
    assert cache.batch_size == 1


def test_a_model_that_is_not_a_gpt_passes_through_every_tool(tmp_path):
    tokens = (torch.arange(600) * 5) % 12  # each token has one successor: a bigram can learn it
    data = TokenSplits(train=tokens, val=tokens[:200].clone(), test=tokens[:200].clone())
    model = _bigram()
    history = train(model, data, TrainConfig(steps=40, batch_size=4, block_size=8, lr=0.1, eval_every=20,
                                             eval_batches=2, device="cpu", progress=False))
    assert history.train_loss[0] > 2.0 and history.val_loss[-1] < 0.5  # from ~log(12) to almost sure
    windows = torch.Generator().manual_seed(0)
    assert evaluate(model, data.val, 4, 8, 2, windows, "cpu") == pytest.approx(history.val_loss[-1], abs=0.5)

    # the learned successor of 0 is 5: greedy generation follows the chain 0 -> 5 -> 10 -> 3 ...
    out = generate(model, [0], SamplingParams(temperature=0.0, max_tokens=4))
    assert out.token_ids == [5, 10, 3, 8] and out.finish_reason == "length"
    three = generate(model, [0], SamplingParams(temperature=1.0, max_tokens=3, seed=1), n=3)
    assert [len(c.token_ids) for c in three] == [3, 3, 3]
    assert mean_logprob(model, [0], [5, 10]) > mean_logprob(model, [0], [7, 7])

    quantised = quantize_model(model, bits=8)
    assert generate(quantised, [0], SamplingParams(temperature=0.0, max_tokens=4)).token_ids == [5, 10, 3, 8]
    x, y = tokens[:8][None], tokens[1:9][None]
    assert training_memory(model, lambda: model.loss(x, y)).parameters == 4 * model.num_parameters()

    adapted = apply_lora(_bigram(), rank=2, targets=("head",))
    report = trainable_parameters(adapted)
    assert report.trainable == 2 * (8 + 12) and report.total > report.trainable
    assert adapted.num_parameters(trainable_only=True) == report.trainable

    saved = save_checkpoint(tmp_path / "bigram", model)
    assert (saved / "config.json").read_text().count('"vocab_size": 12') == 1
