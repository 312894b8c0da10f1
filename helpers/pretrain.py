"""Rebuild the course's base model from nothing: ``python -m helpers.pretrain``.

corpus (generated English + German stories) -> byte-level BPE tokenizer (trained on both, so the
fine-tuning notebooks can share it) -> a GPT of about a million parameters -> trained on the
English stories with ``helpers.train`` -> saved with ``helpers.checkpoints``, together with a few
facts (parameters, steps, seconds, device, validation loss and the unigram baseline).

The default settings run in about ten minutes on a two-core laptop CPU and give a model whose
greedy output falls into loops and whose samples at temperature 0.8 read as simple stories.
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from pathlib import Path

import torch

from helpers.checkpoints import BASE_MODEL_DIR, save_checkpoint
from helpers.corpus import load_corpus
from helpers.data import encode_splits
from helpers.model import GPT, GPTConfig
from helpers.runtime import pick_device, seed_everything
from helpers.sampling import entropy
from helpers.tokenizer import BPETokenizer
from helpers.train import TrainConfig, train

BASE_CONFIG = GPTConfig(block_size=256, vocab_size=2048, n_layer=4, n_head=4, n_embd=128, dropout=0.0)
DEFAULT_STEPS = 1200
BATCH_SIZE = 8  # 8 windows x 256 tokens = 2048 tokens per step
LEARNING_RATE = 3e-3


def unigram_loss(tokens: torch.Tensor, vocab_size: int) -> float:
    """Entropy (nats/token) of the token frequencies in ``tokens``: the loss of the best model that
    ignores context and always predicts these frequencies. A language model must beat it."""
    counts = torch.bincount(tokens.flatten().long(), minlength=vocab_size).double()
    p = counts[counts > 0] / counts.sum()
    return float(entropy(p))


@torch.no_grad()
def full_loss(model: GPT, tokens: torch.Tensor, block_size: int, batch_size: int = 32) -> float:
    """Mean next-token loss over all of ``tokens``, cut into consecutive windows (deterministic)."""
    model.eval()
    n = (len(tokens) - 1) // block_size
    if n < 1:
        raise ValueError(f"tokens must hold more than block_size={block_size} tokens, got {len(tokens)}")
    x = tokens[: n * block_size].view(n, block_size)
    y = tokens[1 : n * block_size + 1].view(n, block_size)
    total = 0.0
    for i in range(0, n, batch_size):
        xb, yb = x[i : i + batch_size].to(model.device), y[i : i + batch_size].to(model.device)
        total += model.loss(xb, yb).item() * len(xb)
    return total / n


@torch.no_grad()
def _sample(model: GPT, tok: BPETokenizer, prompt: str, temperature: float, n_tokens: int, seed: int) -> str:
    """A plain sampling loop (the course's full sampler is helpers.sampling)."""
    gen = torch.Generator().manual_seed(seed)
    ids = tok.encode(prompt)
    for _ in range(n_tokens):
        logits = model(torch.tensor([ids[-model.config.block_size:]], device=model.device))[0, -1].float().cpu()
        if temperature == 0:
            nxt = int(logits.argmax())
        else:
            nxt = int(torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=gen))
        if nxt == tok.eot_id:
            break
        ids.append(nxt)
    return tok.decode(ids)


def pretrain(out: str | Path = BASE_MODEL_DIR, steps: int = DEFAULT_STEPS, device: str | None = None,
             seed: int = 0, progress: bool = True) -> dict:
    """Build corpus and tokenizer, train the base GPT, save it to ``out``; returns the facts saved."""
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    t_start = time.perf_counter()
    dev = pick_device(device)
    seed_everything(seed)
    english, german = load_corpus("english", seed), load_corpus("german", seed)
    t0 = time.perf_counter()
    # one tokenizer for both languages, learned from the training splits only
    tok = BPETokenizer.train(english.train + "\n\n" + german.train, BASE_CONFIG.vocab_size)
    tokenizer_seconds = time.perf_counter() - t0
    data = encode_splits(english, tok)
    print(f"corpus: {len(english.train.encode()):,} training bytes -> {data}; tokenizer trained in "
          f"{tokenizer_seconds:.1f} s", flush=True)
    model = GPT(BASE_CONFIG)
    print(f"model: {model.num_parameters():,} parameters, training {steps} steps on {dev}", flush=True)
    config = TrainConfig(steps=steps, batch_size=BATCH_SIZE, lr=LEARNING_RATE, warmup_steps=min(30, steps // 10),
                         eval_every=max(1, steps // 8), eval_batches=10, seed=seed, device=str(dev),
                         progress=progress)
    start = time.perf_counter()

    def log(step: int, val_loss: float) -> None:  # one line per evaluation, readable in a log file
        print(f"step {step:5d}/{steps}: validation loss {val_loss:.4f} ({time.perf_counter() - start:.0f} s)", flush=True)

    hist = train(model, data, config, on_eval=None if progress else log)
    if hist.diverged:
        raise RuntimeError(f"pretraining failed: {hist.message}")
    model.cpu()
    val_loss = full_loss(model, data.val, BASE_CONFIG.block_size)
    facts = {
        "parameters": model.num_parameters(),
        "config": BASE_CONFIG.to_dict(),
        "steps": len(hist.step),
        "batch_size": BATCH_SIZE,
        "lr": LEARNING_RATE,
        "tokens_seen": hist.tokens_seen,
        "train_tokens": len(data.train),
        "seconds": round(hist.seconds, 1),
        "total_seconds": round(time.perf_counter() - t_start, 1),
        "device": str(dev) if dev.type != "cpu" else f"cpu ({platform.processor() or platform.machine()}, "
                                                      f"{torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        "seed": seed,
        "final_train_loss": round(sum(hist.train_loss[-20:]) / len(hist.train_loss[-20:]), 4),
        "val_loss": round(val_loss, 4),
        "unigram_loss": round(unigram_loss(data.val, BASE_CONFIG.vocab_size), 4),
        "uniform_loss": round(math.log(BASE_CONFIG.vocab_size), 4),
        "tokenizer_seconds": round(tokenizer_seconds, 2),
        "samples": {
            "greedy": _sample(model, tok, "Once upon a time,", 0.0, 150, seed),
            "t0.8": _sample(model, tok, "Once upon a time,", 0.8, 150, seed),
            "t2.0": _sample(model, tok, "Once upon a time,", 2.0, 60, seed),
        },
    }
    save_checkpoint(out, model, tok, extra=facts)
    return facts


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m helpers.pretrain [--out DIR] [--steps N] [--device D] [--seed S]``."""
    parser = argparse.ArgumentParser(prog="python -m helpers.pretrain", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(BASE_MODEL_DIR), help="checkpoint directory (default: the shipped one)")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"training steps (default {DEFAULT_STEPS})")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="PyTorch CPU threads (default: PyTorch's choice)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    facts = pretrain(args.out, args.steps, args.device, args.seed, progress=not args.no_progress)
    samples = facts.pop("samples")
    for key, value in facts.items():
        print(f"{key}: {value}")
    for key, text in samples.items():
        print(f"--- sample ({key}):\n{text}")
    print(f"saved to {args.out}")


if __name__ == "__main__":
    main()
