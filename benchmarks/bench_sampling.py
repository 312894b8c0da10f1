"""Speed of helpers.sampling against Hugging Face, on the CPU with 2 threads.

    python -m benchmarks.bench_sampling

1. Generation: tokens/s of ``generate`` (200 new tokens after a 16-token prompt, temperature 0.8,
   top-k 40) against ``transformers``' ``generate(do_sample=True)`` with its KV cache, on the same
   random GPT-2 weights (n_layer 4, n_head 4, n_embd 128, block 256, vocab 2048). Goal: >= 2x.
2. One sampling step at GPT-2's vocabulary (50 257): the full processor chain (bias, all three
   penalties, temperature, top-k, top-p, min-p) and the draw, against plain softmax + multinomial.
   Goal: <= 1.5x.

Each figure is the median of several timed repeats after a warm-up; ratios compare numbers from
the same run.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from helpers.model import GPT
from helpers.sampling import SamplingParams, _step, generate, process_logits, sample_token

PROMPT_LEN, NEW_TOKENS = 16, 200


def median_seconds(fns: dict[str, Callable[[], object]], rounds: int, block: int = 1, warmup: int = 2
                   ) -> dict[str, float]:
    """Median wall time per call of each function. The functions take turns in blocks of ``block``
    calls, so a change in machine load during the run affects all of them alike, while a block
    still measures one function with its own data in the caches."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            for _ in range(block):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def bench_generation(repeats: int = 5) -> list[tuple[str, float]]:
    import transformers

    torch.manual_seed(0)
    hc = transformers.GPT2Config(n_positions=256, vocab_size=2048, n_layer=4, n_head=4, n_embd=128,
                                 resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    hf = transformers.GPT2LMHeadModel(hc).eval()
    ours = GPT.from_hf(hf).eval()
    prompt = torch.randint(0, 2048, (1, PROMPT_LEN), generator=torch.Generator().manual_seed(0))
    params = SamplingParams(temperature=0.8, top_k=40, max_tokens=NEW_TOKENS, seed=0)

    def run_ours():
        out = generate(ours, prompt[0].tolist(), params)
        assert len(out.token_ids) == NEW_TOKENS

    def run_hf():
        with torch.no_grad():
            out = hf.generate(prompt, do_sample=True, temperature=0.8, top_k=40, top_p=1.0,
                              max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, eos_token_id=None,
                              pad_token_id=0, use_cache=True)
        assert out.shape[1] == PROMPT_LEN + NEW_TOKENS

    seconds = median_seconds({"helpers.sampling.generate": run_ours, "transformers generate (KV cache)": run_hf},
                             repeats)
    return [(name, NEW_TOKENS / s) for name, s in seconds.items()]


def bench_step(rounds: int = 10, vocab: int = 50_257) -> list[tuple[str, float]]:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, vocab, generator=g) * 3  # (1, V), about the spread of a trained model's logits
    prompt = torch.randint(0, vocab, (1, PROMPT_LEN), generator=g)
    output = torch.randint(0, vocab, (1, NEW_TOKENS), generator=g)
    full = SamplingParams(temperature=0.8, top_k=40, top_p=0.9, min_p=0.05, repetition_penalty=1.2,
                          frequency_penalty=0.5, presence_penalty=0.5, logit_bias={11: 2.0, 13: -5.0}, min_tokens=1)
    no_top_k = full.replace(top_k=0)
    sampler = torch.Generator().manual_seed(1)

    def plain():
        torch.multinomial(logits.softmax(-1), 1, generator=sampler)

    def chain(params):
        def step():
            return _step(logits.float(), params, prompt, output, NEW_TOKENS, [0], sampler)
        return step

    def public():
        sample_token(process_logits(logits, full, prompt, output, eos_token_id=0), sampler)

    seconds = median_seconds({
        "softmax + multinomial (baseline)": plain,
        "full chain + draw, as generate runs it": chain(full),
        "full chain + draw via process_logits (V-sized result)": public,
        "full chain without top_k (top_p sorts the vocabulary)": chain(no_top_k),
    }, rounds, block=30, warmup=20)
    return [(name, s * 1e6) for name, s in seconds.items()]


def main() -> None:
    torch.set_num_threads(2)
    print(f"torch {torch.__version__}, CPU threads: {torch.get_num_threads()}\n")
    gen = bench_generation()
    base = gen[1][1]
    print(f"### Generation: {NEW_TOKENS} new tokens after a {PROMPT_LEN}-token prompt, T=0.8, top-k 40\n")
    print("| implementation | tokens/s | vs transformers |\n|---|---:|---:|")
    for name, tps in gen:
        print(f"| {name} | {tps:,.0f} | {tps / base:.2f}x |")
    step = bench_step()
    base = step[0][1]
    print("\n### One sampling step at vocab 50 257 (all filters and penalties on)\n")
    print("| step | median µs | vs baseline |\n|---|---:|---:|")
    for name, us in step:
        print(f"| {name} | {us:,.0f} | {us / base:.2f}x |")


if __name__ == "__main__":
    main()
