"""Memory and time of LoRA vs full fine-tuning, and size vs loss of the quantised base model.

    python -m benchmarks.bench_adaptation                 # CPU, 2 threads, 8 windows x 128 tokens
    python -m benchmarks.bench_adaptation --batch 4 --seq 256
    python -m benchmarks.bench_adaptation --device cuda   # the peak from torch.cuda.max_memory_allocated

Part 1 trains a GPT of about 10M parameters (6 layers, 6 heads, width 384, context 256, vocab 2048)
with AdamW: fully, and with LoRA r=8 (alpha 16) on c_attn only and on every linear of the blocks,
each with and without activation checkpointing (``GPT.gradient_checkpointing``). The default step
is 8 windows of 128 tokens, the tokens per step notebook 12 fine-tunes with.

Memory, per method, in a child process of its own:
- **peak**, measured over two real steps by ``helpers.memory.training_memory``: on CUDA the
  allocator's peak, on a CPU the highest sum of live tensor bytes (every tensor the step creates:
  gradients, AdamW state, saved activations, workspace) plus the parameters;
- **counted**: parameters + gradients + AdamW state + the activations autograd saves (their sum,
  as if all were alive at once);
- **RSS growth** of the process over the real steps (includes the allocator's caching: rougher).
Time per step is the median over the real steps, the methods alternating over several rounds.
A second table measures the peak ratio at several batch sizes: LoRA does not shrink activations,
so without checkpointing the ratio rises with the tokens per step.

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


def _model(method: str, checkpointing: bool, device: str) -> torch.nn.Module:
    from helpers.lora import apply_lora
    from helpers.model import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(**CONFIG)).to(device).train()
    model.gradient_checkpointing = checkpointing
    targets = METHODS[method]
    if targets is not None:
        apply_lora(model, rank=8, alpha=16, targets=targets)
    return model


def _batch(batch: int, seq: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, CONFIG["vocab_size"], (batch, seq + 1), generator=g)
    return tokens[:, :-1].contiguous().to(device), tokens[:, 1:].contiguous().to(device)


def worker(method: str, checkpointing: bool, args: argparse.Namespace) -> dict:
    """One method in a fresh process: measured peak, counted memory, RSS growth and time per step."""
    from helpers.lora import trainable_parameters
    from helpers.memory import training_memory

    model = _model(method, checkpointing, args.device)
    x, y = _batch(args.batch, args.seq, args.device)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    report = training_memory(model, lambda: model.loss(x, y))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.1)
    times = []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        model.loss(x, y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base_rss
    counts = trainable_parameters(model)
    return {"method": method, "checkpointing": checkpointing, "trainable": counts.trainable, "total": counts.total,
            "counted": report.as_row(), "peak": report.peak, "peak_source": report.peak_source,
            "rss_growth": rss, "step_s": statistics.median(times)}


def _child(method: str, checkpointing: bool, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.bench_adaptation", "--child", method, "--batch", str(args.batch),
           "--seq", str(args.seq), "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--device", args.device, "--threads", str(args.threads)]
    if checkpointing:
        cmd.append("--checkpointing")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def memory_table(args: argparse.Namespace) -> None:
    variants = [(m, ck) for ck in (False, True) for m in METHODS]
    runs: dict[tuple, list[dict]] = {v: [] for v in variants}
    for _ in range(args.rounds):  # alternate the methods, so a change in machine load hits all alike
        for v in variants:
            runs[v].append(_child(*v, args))
    rows = {}
    for v, rs in runs.items():
        row = dict(rs[0])  # the memory figures are the same in every round; time and RSS are not
        row["step_s"] = statistics.median(r["step_s"] for r in rs)
        row["rss_growth"] = statistics.median(r["rss_growth"] for r in rs)
        rows[v] = row
    first = rows[variants[0]]
    print(f"### LoRA vs full fine-tuning: GPT {first['total'] / 1e6:.1f}M parameters {CONFIG}, AdamW, "
          f"{args.batch} windows x {args.seq} tokens = {args.batch * args.seq} tokens per step, {args.device}, "
          f"{args.threads} threads; peak measured by {first['peak_source']}; "
          f"time: median of {args.rounds} rounds x {args.steps} steps\n")
    head = ("| method | checkpointing | trainable | peak | vs full | counted (params + grads + AdamW + activations) "
            "| vs full | RSS growth | vs full | time/step | vs full |")
    print(head)
    print("|---" * (head.count("|") - 1) + "|")
    for (method, ck), r in rows.items():
        full = rows[("full fine-tuning", ck)]
        c, f = r["counted"], full["counted"]
        print(f"| {method} | {'yes' if ck else 'no'} | {r['trainable']:,} ({r['trainable'] / r['total']:.2%}) "
              f"| {r['peak'] / 1e6:.0f} MB | **{r['peak'] / full['peak']:.2f}x** "
              f"| {c['total']:.0f} MB ({c['parameters']:.0f} + {c['gradients']:.1f} + {c['optimizer_state']:.1f} + "
              f"{c['activations']:.0f}) | {c['total'] / f['total']:.2f}x "
              f"| {r['rss_growth'] / 1e6:.0f} MB | {r['rss_growth'] / max(full['rss_growth'], 1):.2f}x "
              f"| {r['step_s'] * 1e3:.0f} ms | {r['step_s'] / full['step_s']:.2f}x |")


def batch_table(args: argparse.Namespace, batches: list[int]) -> None:
    from helpers.memory import training_memory

    print(f"\n### Measured peak vs batch size (windows of {args.seq} tokens); LoRA / full fine-tuning\n")
    print("| batch | tokens | full peak | LoRA c_attn | ratio | LoRA attn+mlp | ratio "
          "| full peak, checkpointing | LoRA c_attn | ratio | LoRA attn+mlp | ratio |")
    print("|---" * 12 + "|")
    for b in batches:
        x, y = _batch(b, args.seq, args.device)
        cells = []
        for ck in (False, True):
            peak = {}
            for m in METHODS:
                model = _model(m, ck, args.device)
                peak[m] = training_memory(model, lambda model=model, x=x, y=y: model.loss(x, y)).peak
                del model
            full = peak["full fine-tuning"]
            cells.append(f"{full / 1e6:.0f} MB | " + " | ".join(
                f"{peak[m] / 1e6:.0f} MB | {peak[m] / full:.2f}x" for m in list(METHODS)[1:]))
        print(f"| {b} | {b * args.seq} | " + " | ".join(cells) + " |")


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
    ap.add_argument("--batch", type=int, default=8, help="windows per step")
    ap.add_argument("--seq", type=int, default=128, help=f"tokens per window (at most {CONFIG['block_size']})")
    ap.add_argument("--checkpointing", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--batches", default="2,4,8,16,32", help="batch sizes of the peak-vs-batch table, comma-separated")
    ap.add_argument("--skip-quantisation", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not 1 <= args.seq <= CONFIG["block_size"]:
        ap.error(f"--seq must be in 1..{CONFIG['block_size']} (the model's context), got {args.seq}")
    if args.batch < 1:
        ap.error(f"--batch must be at least 1, got {args.batch}")
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(worker(args.child, args.checkpointing, args)))
        return
    t0 = time.perf_counter()
    memory_table(args)
    batch_table(args, [int(b) for b in args.batches.split(",")])
    if not args.skip_quantisation:
        quantisation_table()
    print(f"\n({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
