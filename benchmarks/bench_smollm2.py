"""SmolLM2-135M-Instruct in the course's Llama model: generation speed, load time and memory, on the CPU.

    python -m benchmarks.bench_smollm2 [--tokens 48] [--rounds 5] [--threads 2]

1. Generation (fp32, greedy, KV cache, ``--tokens`` new tokens after a chat prompt; the end token is
   masked so every run writes exactly that many): ``helpers.sampling.generate`` on our model against
   ``transformers``' ``generate()`` on the same weights (transformers reads the same GGUF file), and
   against the weight-streaming floor: one matrix-vector product with every 2-D weight of the model in
   fp32, which is what any decoder has to read per token, repeated once per new token in each round. The
   three take turns round by round, so a change in machine load affects them alike; the figures are
   medians over the rounds, per new token
   (our whole ``generate`` call, prompt included, divided by the new tokens). Goals: >= 1.25x
   transformers, <= 1.25x the floor.
   Each implementation also writes one token only (the prompt's prefill and the first token: the time to
   the first token), so that the decoding steps after it are measured on their own:
   (time for all tokens - time for the first) / (tokens - 1). The floor models one such step; the whole
   call also pays for the 42-position prefill, which is compute-bound, not bandwidth-bound.
2. ``load_smollm2()``: wall time (goal <= 15 s on 2 cores), and the process's peak RSS growth while loading.
3. Memory of the loaded model while it generates: the parameter bytes, the KV cache's bytes, and the peak
   of live tensor bytes during one ``generate`` (``helpers.memory.LiveTensorBytes``) on top of the
   parameters. Goal: within 10 % of parameters + KV cache.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch

from helpers.memory import LiveTensorBytes
from helpers.pretrained import chat_prompt, load_smollm2, smollm2_path
from helpers.sampling import SamplingParams, generate

PROMPT = [{"role": "user", "content": "Write a short story about a robot who learns to paint."}]


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=48, help="new tokens per generation (>= 1)")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds (>= 1)")
    ap.add_argument("--threads", type=int, default=2, help="PyTorch threads (>= 1)")
    ap.add_argument("--skip-hf", action="store_true", help="do not load transformers' model")
    args = ap.parse_args(argv)
    for name in ("tokens", "rounds", "threads"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    torch.set_num_threads(args.threads)

    rss0 = _rss_bytes()
    t0 = time.perf_counter()
    model, tok = load_smollm2(device="cpu")
    load_s = time.perf_counter() - t0
    load_rss = _peak_rss_bytes() - rss0
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())

    prompt = chat_prompt(PROMPT)
    prompt_ids = tok.encode(prompt)
    params = SamplingParams(temperature=0.0, max_tokens=args.tokens, min_tokens=args.tokens)
    weights = [p.detach() for p in model.parameters() if p.dim() == 2]  # the tied matrix once
    vecs = [torch.randn(w.shape[1]) for w in weights]
    outs = [torch.empty(w.shape[0]) for w in weights]

    def floor() -> None:
        """As many passes over the weights as there are new tokens: timed over as long a stretch as a
        generation, one pass is steadier against the machine's moment-to-moment changes in memory speed."""
        for _ in range(args.tokens):
            for w, v, o in zip(weights, vecs, outs):
                torch.mv(w, v, out=o)

    ours_ids: list[int] = []
    first_only = params.replace(max_tokens=1, min_tokens=1)

    def run_ours() -> None:
        out = generate(model, prompt_ids, params, tokenizer=tok)
        assert len(out.token_ids) == args.tokens
        ours_ids[:] = out.token_ids

    def first_ours() -> None:
        generate(model, prompt_ids, first_only, tokenizer=tok)

    fns = {"ours": run_ours, "ours first token": first_ours, "floor": floor}
    hf_ids: list[int] = []
    if not args.skip_hf:
        import transformers

        path = smollm2_path()
        hf = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                               dtype=torch.float32).eval()
        x = torch.tensor([prompt_ids])

        def hf_generate(n: int) -> torch.Tensor:
            with torch.no_grad():
                return hf.generate(x, do_sample=False, max_new_tokens=n, min_new_tokens=n,
                                   eos_token_id=tok.eot_id, pad_token_id=tok.eot_id, use_cache=True)

        def run_hf() -> None:
            hf_ids[:] = hf_generate(args.tokens)[0, x.shape[1]:].tolist()

        fns["transformers"] = run_hf
        fns["transformers first token"] = lambda: hf_generate(1)

    for fn in fns.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(args.rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    per_token = {k: statistics.median(v) / args.tokens for k, v in times.items()
                 if "first" not in k}
    # ratio per round (the three ran seconds apart), then the median: steadier than a ratio of medians
    vs_floor = statistics.median(o / f for o, f in zip(times["ours"], times["floor"]))
    steps = max(args.tokens - 1, 1)

    def decode_steps(name: str) -> list[float]:
        """Seconds per decoding step after the first token, round by round."""
        return [(a - b) / steps for a, b in zip(times[name], times[f"{name} first token"])]

    tracker = LiveTensorBytes()
    with tracker:
        generate(model, prompt_ids, params, tokenizer=tok)
    cache = model.new_cache(1)
    cache.reserve(len(prompt_ids) + args.tokens)
    kv_bytes = cache.nbytes
    del cache

    print(f"SmolLM2-135M-Instruct, fp32, CPU, {args.threads} threads, torch {torch.__version__}; "
          f"prompt {len(prompt_ids)} tokens, {args.tokens} new tokens (greedy), {args.rounds} rounds\n")
    print("| implementation | ms per new token (median) | ours vs it |")
    print("|---|---|---|")
    print(f"| ours (`helpers.sampling.generate`) | {per_token['ours'] * 1e3:.1f} | – |")
    if "transformers" in per_token:
        vs_hf = statistics.median(h / o for o, h in zip(times["ours"], times["transformers"]))
        same = "same tokens" if hf_ids == ours_ids else "DIFFERENT tokens"
        print(f"| transformers `generate()` ({same}) | {per_token['transformers'] * 1e3:.1f} | "
              f"**{vs_hf:.2f}x** faster (goal >= 1.25x) |")
    print(f"| weight-streaming floor (one fp32 mat-vec over all 2-D weights) | {per_token['floor'] * 1e3:.1f} | "
          f"**{vs_floor:.2f}x** the floor (goal <= 1.25x) |")
    print()
    print("Time to the first token (prefill + one token) and each decoding step after it, medians:\n")
    print("| implementation | first token (ms) | ms per decoding step | vs the floor |")
    print("|---|---|---|---|")
    for name in [n for n in ("ours", "transformers") if n in times]:
        step = decode_steps(name)
        ratio = statistics.median(d / (f / args.tokens) for d, f in zip(step, times["floor"]))
        print(f"| {name} | {statistics.median(times[f'{name} first token']) * 1e3:.1f} | "
              f"{statistics.median(step) * 1e3:.1f} | **{ratio:.2f}x** |")
    if "transformers" in times:
        vs_hf_step = statistics.median(h / o for o, h in zip(decode_steps("ours"), decode_steps("transformers")))
        print(f"\nPer decoding step, ours is **{vs_hf_step:.2f}x** faster than `transformers`.")
    print()
    print("| load and memory | value | goal |")
    print("|---|---|---|")
    print(f"| `load_smollm2()` wall time | {load_s:.1f} s | <= 15 s |")
    print(f"| peak RSS growth while loading | {load_rss / 2**20:.0f} MiB | – |")
    print(f"| parameter bytes (fp32, tied matrix once) | {param_bytes / 2**20:.0f} MiB | – |")
    print(f"| KV cache for prompt + answer | {kv_bytes / 2**20:.1f} MiB | – |")
    peak = param_bytes + tracker.peak
    print(f"| peak live tensors while generating (parameters included) | {peak / 2**20:.0f} MiB = "
          f"**{peak / (param_bytes + kv_bytes):.3f}x** parameters + KV cache | <= 1.10x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
