"""Memory and time of LoRA vs full fine-tuning, and size vs loss of the quantised base model.

    python -m benchmarks.bench_adaptation                 # CPU, 2 threads, batch 8 x 256 tokens
    python -m benchmarks.bench_adaptation --batch 4       # another fine-tuning batch
    python -m benchmarks.bench_adaptation --device cuda   # adds torch.cuda.max_memory_allocated

Part 1 trains a GPT of about 10M parameters (6 layers, 6 heads, width 384, context 256, vocab 2048)
with AdamW: fully, and with LoRA r=8 (alpha 16) on c_attn only and on every linear of the blocks.
Memory is counted with ``helpers.memory.training_memory`` (parameters + gradients + optimizer state
+ the activations autograd saves, watched with saved_tensors_hooks); as a cross-check each method
runs in its own child process and reports how much its peak RSS grew over a few real steps
(RSS includes allocator caching, so it is the rougher number). Time per step is the median over
the real steps, the methods alternating over several rounds. A second table counts memory at several batch sizes: the activations grow with the
batch and LoRA does not shrink them, so the LoRA / full ratio rises with the batch.

Part 2 quantises the shipped base model (if present) and reports size and English validation
loss for fp32, bf16, int8 per tensor / per channel, int4 group-wise and PyTorch's dynamic int8.
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import statistics
import subprocess
import sys
import time
import warnings

import torch

CONFIG = dict(n_layer=6, n_head=6, n_embd=384, block_size=256, vocab_size=2048)
METHODS = {
    "full fine-tuning": None,
    "LoRA r=8, c_attn": ("c_attn",),
    "LoRA r=8, attn+mlp": ("attn", "mlp"),
}


def _model(method: str, device: str) -> torch.nn.Module:
    from helpers.lora import apply_lora
    from helpers.model import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(**CONFIG)).to(device).train()
    targets = METHODS[method]
    if targets is not None:
        apply_lora(model, rank=8, alpha=16, targets=targets)
    return model


def _batch(batch: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    seq = torch.randint(0, CONFIG["vocab_size"], (batch, CONFIG["block_size"] + 1), generator=g)
    return seq[:, :-1].contiguous().to(device), seq[:, 1:].contiguous().to(device)


def worker(method: str, batch: int, steps: int, warmup: int, device: str) -> dict:
    """One method in a fresh process: counted memory, RSS growth and time per step."""
    from helpers.lora import trainable_parameters
    from helpers.memory import training_memory

    model = _model(method, device)
    x, y = _batch(batch, device)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    report = training_memory(model, lambda: model.loss(x, y))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.1)
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        model.loss(x, y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base_rss
    return {"method": method, "trainable": trainable_parameters(model).trainable,
            "total": trainable_parameters(model).total, "counted": report.as_row(), "cuda_peak": report.cuda_peak,
            "rss_growth": rss, "step_s": statistics.median(times)}


def _child(method: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.bench_adaptation", "--child", method, "--batch", str(args.batch),
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--device", args.device,
           "--threads", str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def memory_table(args: argparse.Namespace) -> None:
    runs: dict[str, list[dict]] = {m: [] for m in METHODS}
    for _ in range(args.rounds):  # alternate the methods, so a change in machine load hits all alike
        for m in METHODS:
            runs[m].append(_child(m, args))
    rows = []
    for rs in runs.values():
        row = dict(rs[0])
        row["step_s"] = statistics.median(r["step_s"] for r in rs)
        row["rss_growth"] = statistics.median(r["rss_growth"] for r in rs)
        rows.append(row)
    full = rows[0]
    tokens = args.batch * CONFIG["block_size"]
    print(f"### LoRA vs full fine-tuning: GPT {full['total'] / 1e6:.1f}M parameters {CONFIG}, AdamW, "
          f"batch {args.batch} x {CONFIG['block_size']} = {tokens} tokens, {args.device}, {args.threads} threads, "
          f"time: median of {args.rounds} rounds x {args.steps} steps\n")
    cuda = args.device.startswith("cuda")
    head = "| method | trainable | params | grads | AdamW state | activations | counted total | vs full |"
    head += " cuda peak | vs full |" if cuda else " RSS growth | vs full |"
    print(head + " time/step | vs full |")
    print("|---" * (head.count("|") + 1) + "|")
    for r in rows:
        c, f = r["counted"], full["counted"]
        measured, ref = (r["cuda_peak"], full["cuda_peak"]) if cuda else (r["rss_growth"], full["rss_growth"])
        print(f"| {r['method']} | {r['trainable']:,} ({r['trainable'] / r['total']:.2%}) | {c['parameters']:.0f} MB "
              f"| {c['gradients']:.1f} MB | {c['optimizer_state']:.1f} MB | {c['activations']:.0f} MB "
              f"| {c['total']:.0f} MB | {c['total'] / f['total']:.2f}x | {measured / 1e6:.0f} MB "
              f"| {measured / max(ref, 1):.2f}x | {r['step_s'] * 1e3:.0f} ms | {r['step_s'] / full['step_s']:.2f}x |")


def batch_table(device: str, batches: list[int]) -> None:
    from helpers.memory import training_memory

    print("\n### Counted memory vs batch size (windows of 256 tokens)\n")
    print("| batch | full: activations | full total | LoRA c_attn total | ratio | LoRA attn+mlp total | ratio |")
    print("|---|---|---|---|---|---|---|")
    models = {m: _model(m, device) for m in METHODS}
    for b in batches:
        x, y = _batch(b, device)
        rep = {m: training_memory(model, lambda model=model, x=x, y=y: model.loss(x, y)) for m, model in models.items()}
        full, a, b2 = rep["full fine-tuning"], rep["LoRA r=8, c_attn"], rep["LoRA r=8, attn+mlp"]
        print(f"| {b} | {full.activations / 1e6:.0f} MB | {full.total / 1e6:.0f} MB | {a.total / 1e6:.0f} MB | "
              f"{a.total / full.total:.2f}x | {b2.total / 1e6:.0f} MB | {b2.total / full.total:.2f}x |")


def quantisation_table() -> None:
    from helpers.checkpoints import load_base_model
    from helpers.corpus import load_corpus
    from helpers.data import encode_text
    from helpers.quantize import model_size_bytes, quantize_model
    from helpers.train import evaluate

    try:
        base, tok = load_base_model("cpu")
    except FileNotFoundError as err:
        print(f"\n(quantisation table skipped: {err})")
        return
    base.eval()
    val = encode_text(load_corpus("english").val, tok)
    n_weights = base.num_parameters()

    def loss(model: torch.nn.Module) -> float:
        return evaluate(model, val, 8, base.config.block_size, 20, torch.Generator().manual_seed(0), "cpu")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated (moving to torchao)
        from torch.ao.quantization import quantize_dynamic

        variants = {
            "fp32": base,
            "bf16 (cast)": copy.deepcopy(base).to(torch.bfloat16),
            "int8 per tensor": quantize_model(base, 8, "per_tensor"),
            "int8 per channel": quantize_model(base, 8, "per_channel"),
            "int4 group 128": quantize_model(base, 4, "group", group_size=128),
            "int4 group 64": quantize_model(base, 4, "group", group_size=64),
            "int4 group 32": quantize_model(base, 4, "group", group_size=32),
            "int4 per channel": quantize_model(base, 4, "per_channel"),
            "torch quantize_dynamic int8 (linears only)": quantize_dynamic(base, {torch.nn.Linear}, dtype=torch.qint8),
        }
        fp32_size, fp32_loss = model_size_bytes(base), loss(base)
        print(f"\n### Quantised base model ({n_weights:,} parameters), English validation loss "
              "(20 x 8 windows of 256 tokens)\n")
        print("| variant | size | vs fp32 | bits / parameter | val loss | change |\n|---|---|---|---|---|---|")
        for name, model in variants.items():
            size = model_size_bytes(model) if "quantize_dynamic" not in name else None
            value = loss(model)
            size_txt = (f"{size / 1e6:.2f} MB | {size / fp32_size:.3f}x | {8 * size / n_weights:.2f}" if size
                        else "n/a (packed params are not tensors) | | ")
            print(f"| {name} | {size_txt} | {value:.4f} | {value - fp32_loss:+.4f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8, help="windows of 256 tokens per step")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--skip-quantisation", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(worker(args.child, args.batch, args.steps, args.warmup, args.device)))
        return
    t0 = time.perf_counter()
    memory_table(args)
    batch_table(args.device, [1, 2, 4, 8, 16])
    if not args.skip_quantisation:
        quantisation_table()
    print(f"\n({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
