"""Training throughput and peak memory of our GPT against Hugging Face's GPT2LMHeadModel.

    python -m benchmarks.bench_model                     # CPU, 2 threads, the README's figures
    python -m benchmarks.bench_model --nanogpt PATH      # also nanoGPT's model.py, if you have a copy
    python -m benchmarks.bench_model --device cuda       # tokens/s and MFU in bf16 on a GPU

One training step is forward + backward + an AdamW step, with the same optimiser settings for every
model, so the ratio measures the models. Each model trains in a child process of its own (its own
allocator, as when it trains alone, and its own peak memory). On the CPU the children take turns of a
few steps, many rounds, while the others wait, so that a change in the machine's speed (shared virtual
machines drift by 10-30 % within minutes) hits all of them alike; the speed ratio is the median of the
per-round ratios. (Training the models in one process instead would let them reuse each other's freed
memory, which changes their speed.)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

CPU_CONFIG = dict(n_layer=4, n_head=4, n_embd=128, block_size=256, vocab_size=2048)
GPU_CONFIGS = {
    "~10M": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, vocab_size=2048),
    "~100M": dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=50304),
}


def _build(kind: str, cfg: dict, nanogpt: str | None) -> torch.nn.Module:
    if kind == "ours":
        from helpers.model import GPT, GPTConfig

        return GPT(GPTConfig(dropout=0.0, **cfg))
    if kind == "hf":
        from transformers import GPT2Config, GPT2LMHeadModel

        hc = GPT2Config(n_layer=cfg["n_layer"], n_head=cfg["n_head"], n_embd=cfg["n_embd"],
                        n_positions=cfg["block_size"], vocab_size=cfg["vocab_size"],
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
        return GPT2LMHeadModel(hc)
    if kind == "nanogpt":
        spec = importlib.util.spec_from_file_location("nanogpt_model", nanogpt)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod.GPT(mod.GPTConfig(dropout=0.0, bias=True, **cfg))
    raise ValueError(f"kind must be ours, hf or nanogpt, got {kind!r}")


def _loss(kind: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if kind == "ours":
        return model.loss(x, y)
    if kind == "hf":
        # HF shifts labels inside; passing x as labels trains on the same next-token targets.
        return model(input_ids=x, labels=x).loss
    return model(x, y)[1]


def worker(kind: str, cfg: dict, batch: int, steps: int, warmup: int, device: str, nanogpt: str | None) -> dict:
    """Train ``steps`` steps after ``warmup`` and report tokens/s and memory (runs in a child process)."""
    torch.manual_seed(0)
    dev = torch.device(device)
    model = _build(kind, cfg, nanogpt).to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    T = cfg["block_size"]
    x = torch.randint(0, cfg["vocab_size"], (batch, T + 1), device=dev)
    x, y = x[:, :-1].contiguous(), x[:, 1:].contiguous()
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else torch.autocast("cpu", enabled=False)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        with amp:
            loss = _loss(kind, model, x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    peak = (torch.cuda.max_memory_allocated(dev) if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base_rss)
    n_params = sum(p.numel() for p in model.parameters())
    step = statistics.median(times)
    return {"kind": kind, "tokens_per_s": batch * T / step, "step_s": step, "peak_bytes": peak, "params": n_params}


def serve(kind: str, cfg: dict, batch: int, warmup: int, device: str, nanogpt: str | None) -> None:
    """Child process: build one model, then run steps on request. Reads ``N`` (run N steps, answer the seconds
    per step) or ``memory`` (answer the peak RSS growth in bytes) from stdin, one per line, until it closes."""
    dev = torch.device(device)
    torch.manual_seed(0)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    model = _build(kind, cfg, nanogpt).to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    T = cfg["block_size"]
    x = torch.randint(0, cfg["vocab_size"], (batch, T + 1), device=dev)
    x, y = x[:, :-1].contiguous(), x[:, 1:].contiguous()

    def step() -> None:
        _loss(kind, model, x, y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "memory":
            print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base_rss, flush=True)
            continue
        n = int(line)
        t0 = time.perf_counter()
        for _ in range(n):
            step()
        print((time.perf_counter() - t0) / n, flush=True)


def _child(kind: str, args: argparse.Namespace, cfg: dict, batch: int) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.bench_model", "--child", kind, "--config", json.dumps(cfg),
           "--batch", str(batch), "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--device", args.device, "--threads", str(args.threads)]
    if args.nanogpt:
        cmd += ["--nanogpt", args.nanogpt]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def mfu(tokens_per_s: float, params: int, cfg: dict, peak_flops: float) -> float:
    """Model-FLOPs utilisation: 6 FLOPs per parameter per token plus attention's 12·L·C·T (PaLM's count)."""
    flops_per_token = 6 * params + 12 * cfg["n_layer"] * cfg["n_embd"] * cfg["block_size"]
    return tokens_per_s * flops_per_token / peak_flops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=30, help="CPU: rounds of turns")
    ap.add_argument("--per-turn", type=int, default=2, help="CPU: steps per model per turn")
    ap.add_argument("--nanogpt", help="path to nanoGPT's model.py, to add it to the comparison")
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="the GPU's dense bf16 peak (H100 SXM: 989)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.serve:
        serve(args.serve, json.loads(args.config), args.batch, args.warmup, args.device, args.nanogpt)
        return
    if args.child:
        cfg = json.loads(args.config)
        print(json.dumps(worker(args.child, cfg, args.batch, args.steps, args.warmup, args.device, args.nanogpt)))
        return

    if args.device.startswith("cuda"):
        name = torch.cuda.get_device_name(0)
        print(f"| config | model | tokens/s | MFU (bf16, peak {args.peak_tflops:g} TFLOP/s) | peak memory |\n|---|---|---|---|---|")
        for label, cfg in GPU_CONFIGS.items():
            for kind in ("ours", "hf"):
                r = _child(kind, args, cfg, batch=args.batch)
                print(f"| {label} ({r['params'] / 1e6:.1f}M) | {kind} | {r['tokens_per_s']:,.0f} | "
                      f"{mfu(r['tokens_per_s'], r['params'], cfg, args.peak_tflops * 1e12):.1%} | "
                      f"{r['peak_bytes'] / 2**20:,.0f} MiB |")
        print(f"\ndevice: {name}, batch {args.batch}")
        return

    kinds = ["ours", "hf"] + (["nanogpt"] if args.nanogpt else [])
    children = {}
    for kind in kinds:  # started one after another, so that their warm-up steps do not overlap
        cmd = [sys.executable, "-m", "benchmarks.bench_model", "--serve", kind, "--config", json.dumps(CPU_CONFIG),
               "--batch", str(args.batch), "--warmup", str(args.warmup), "--device", args.device,
               "--threads", str(args.threads)] + (["--nanogpt", args.nanogpt] if args.nanogpt else [])
        children[kind] = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for line in children[kind].stdout:  # (a model may print while it is built)
            if line.strip() == "ready":
                break
        else:
            raise RuntimeError(f"the {kind} child did not start")

    def ask(kind: str, request: str) -> float:
        child = children[kind]
        child.stdin.write(request + "\n")
        child.stdin.flush()
        return float(child.stdout.readline())

    times: dict[str, list[float]] = {k: [] for k in kinds}
    try:
        for _ in range(args.rounds):
            for kind in kinds:
                times[kind].append(ask(kind, str(args.per_turn)))
        peak = {k: ask(k, "memory") for k in kinds}
    finally:
        for child in children.values():
            child.stdin.close()
            child.wait(timeout=60)
    tokens = args.batch * CPU_CONFIG["block_size"]
    speed = {k: tokens / statistics.median(ts) for k, ts in times.items()}
    # Each round's ratio compares turns a second or two apart; the median over rounds leaves out the
    # rounds in which the machine changed speed between two turns.
    ratios = {k: sorted(t / o for o, t in zip(times["ours"], ts)) for k, ts in times.items()}
    print(f"Training, config {CPU_CONFIG}, batch {args.batch}x{CPU_CONFIG['block_size']}, CPU, {args.threads} "
          f"threads, {args.rounds} rounds of {args.per_turn}-step turns\n")
    print("| model | tokens/s (median) | ours vs it: median of per-round ratios [10th, 90th percentile] "
          "| peak memory (RSS growth) | ours vs it |\n|---|---|---|---|---|")
    for k in kinds:
        r = ratios[k]
        lo, hi = r[len(r) // 10], r[-1 - len(r) // 10]
        print(f"| {k} | {speed[k]:,.0f} | {statistics.median(r):.2f}x [{lo:.2f}, {hi:.2f}] "
              f"| {peak[k] / 2**20:,.0f} MiB | {peak['ours'] / max(peak[k], 1):.2f}x |")


if __name__ == "__main__":
    main()
