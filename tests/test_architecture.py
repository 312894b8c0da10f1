"""helpers.architecture: parameter counts (GPT-2 exact), memory, attention cost, positions; its plots."""

import math
import random

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from helpers import architecture as A
from helpers.model import GPT, GPTConfig, parameter_count


def _random_configs(n: int, seed: int = 0):
    r = random.Random(seed)
    for _ in range(n):
        n_head = r.randint(1, 4)
        yield GPTConfig(block_size=r.randint(1, 40), vocab_size=r.randint(2, 300), n_layer=r.randint(1, 3),
                        n_head=n_head, n_embd=n_head * r.randint(1, 12), bias=r.random() < 0.5)


def test_closed_form_matches_real_models_over_random_configs():
    torch.manual_seed(0)
    seen_bias = set()
    for cfg in _random_configs(40):
        model = GPT(cfg)
        n = model.num_parameters()
        assert parameter_count(cfg) == n, cfg
        parts = A.component_counts(cfg)
        assert parts == model.parameter_breakdown(), cfg
        assert sum(v for p in parts.values() for v in p.values()) == n
        seen_bias.add(cfg.bias)
    assert seen_bias == {True, False}


@pytest.mark.parametrize("name", ["small", "medium", "large", "xl"])
def test_gpt2_counts_exact_in_closed_form_and_on_meta(name):
    cfg = A.GPT2_CONFIGS[name]
    assert parameter_count(cfg) == A.GPT2_PARAMETERS[name]
    model = A.meta_model(cfg)
    assert model.device.type == "meta"  # shapes only: no 6 GB for XL
    assert model.num_parameters() == A.GPT2_PARAMETERS[name]
    nominal = A.GPT2_NOMINAL[name]  # a label: "1.5B" is 1.56 billion rounded down
    scale = 1e9 if nominal.endswith("B") else 1e6
    assert abs(A.GPT2_PARAMETERS[name] / scale - float(nominal[:-1])) / float(nominal[:-1]) < 0.05


def test_meta_model_has_the_real_models_shapes():
    cfg = GPTConfig(block_size=16, vocab_size=50, n_layer=2, n_head=2, n_embd=8, bias=False)
    real, meta = GPT(cfg), A.meta_model(cfg)
    assert [(n, p.shape) for n, p in real.named_parameters()] == [(n, p.shape) for n, p in meta.named_parameters()]
    assert all(p.is_meta for p in meta.parameters())
    assert meta.lm_head.weight is meta.transformer.wte.weight  # still tied
    cpu = torch.nn.Linear(2, 2)  # outside the context, initialisation works as usual
    assert not cpu.weight.is_meta and cpu.weight.abs().sum() > 0


@pytest.mark.parametrize("size", ["small", "medium", "large", "xl"])
def test_gpt2_parameter_counts_are_what_the_configs_build(size):
    """The published counts (124,439,808 for small) against the parameters a meta-device model of
    each config actually has, and against Hugging Face's GPT-2 built from the same shapes."""
    cfg = A.GPT2_CONFIGS[size]
    meta = A.meta_model(cfg)
    built = sum(p.numel() for p in meta.parameters())  # parameters() yields the tied matrix once
    assert built == A.GPT2_PARAMETERS[size]
    transformers = pytest.importorskip("transformers")
    hc = transformers.GPT2Config(n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd, n_positions=cfg.block_size,
                                 vocab_size=cfg.vocab_size)
    with torch.device("meta"):
        hf = transformers.GPT2LMHeadModel(hc)
    assert sum(p.numel() for p in hf.parameters()) == A.GPT2_PARAMETERS[size]
    assert A.GPT2_PARAMETERS["small"] == 124_439_808  # the figure quoted in the notebook's prose


def test_memory_arithmetic():
    assert A.weight_bytes(1000, "fp32") == 4000 and A.weight_bytes(1000, "int4") == 500
    assert A.training_bytes(10, "fp32")["total"] == 160
    assert A.training_bytes(10, "mixed")["total"] == 160  # mixed precision saves no parameter memory
    assert A.training_bytes(10, "bf16")["total"] == 80
    row = A.memory_table({"m": 1_000_000})[0]
    assert row["bf16"] == 2e6 and row["train_fp32"] == 16e6
    assert A.format_bytes(497_759_232) == "497.8 MB" and A.format_bytes(12) == "12 B"
    with pytest.raises(ValueError, match="fmt must be one of"):
        A.weight_bytes(10, "fp8")
    with pytest.raises(ValueError, match="precision must be one of"):
        A.training_bytes(10, "fp64")
    with pytest.raises(ValueError, match="n_params must be"):
        A.weight_bytes(-1)


def test_adamw_really_holds_sixteen_bytes_per_parameter():
    cfg = GPTConfig(block_size=8, vocab_size=30, n_layer=1, n_head=2, n_embd=8)
    model = GPT(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    idx = torch.randint(0, 30, (2, 8))
    model.loss(idx, idx).backward()
    opt.step()
    measured = A.measured_training_bytes(model, opt)
    assert measured["total"] == A.training_bytes(model.num_parameters(), "fp32")["total"]
    assert measured["optimizer_state"] == 2 * measured["weights"]


def test_naive_and_fused_attention_agree():
    q, k, v = (torch.randn(2, 3, 17, 8, generator=torch.Generator().manual_seed(i)) for i in range(3))
    torch.testing.assert_close(A.naive_attention(q, k, v), A.fused_attention(q, k, v), atol=1e-5, rtol=1e-5)


def test_peak_tensor_bytes_counts_live_tensors_only():
    x = torch.randn(1000)

    def chain(x):
        a = x * 2
        b = a * 2
        del a
        c = b * 2
        del b
        return c.view(10, 100)  # a view allocates nothing

    out, peak = A.peak_tensor_bytes(chain, x)
    assert peak == 2 * 4000 and out.shape == (10, 100)


def test_attention_memory_is_quadratic_naive_linear_fused():
    naive = A.attention_cost([32, 64, 128], "naive", n_head=2, head_dim=8, repeats=1, device="cpu")
    fused = A.attention_cost([32, 64, 128], "fused", n_head=2, head_dim=8, repeats=1, device="cpu")
    assert [r["seq_len"] for r in naive] == [32, 64, 128]
    for r in naive:
        assert r["peak_bytes"] >= r["score_bytes"] and r["seconds"] > 0
    assert 3.5 < naive[2]["peak_bytes"] / naive[1]["peak_bytes"] < 4.5  # twice the length, four times the memory
    assert 1.5 < fused[2]["peak_bytes"] / fused[1]["peak_bytes"] < 2.5
    assert naive[2]["flops"] == 4 * 2 * 128 * 128 * 8
    with pytest.raises(ValueError, match="implementation must be one of"):
        A.attention_cost([8], "flash")
    with pytest.raises(ValueError, match="seq_lens"):
        A.attention_cost([0])


def test_fits():
    xs = [1.0, 2.0, 3.0, 4.0, 5.0]
    fit = A.fit_quadratic(xs, [2 + 3 * x + 0.5 * x * x for x in xs])
    assert math.isclose(fit["c"], 0.5, rel_tol=1e-9) and math.isclose(fit["a"], 2, abs_tol=1e-9)
    assert math.isclose(fit["r2"], 1.0) and math.isclose(fit["b"], 3, rel_tol=1e-9)
    assert math.isclose(A.loglog_slope(xs, [7 * x**2 for x in xs]), 2.0)
    with pytest.raises(ValueError, match=">= 3"):
        A.fit_quadratic([1, 2], [1, 2])


def test_extend_context_keeps_trained_positions():
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=8, vocab_size=20, n_layer=1, n_head=2, n_embd=8)).eval()
    big = A.extend_context(model, 24).eval()
    assert big.config.block_size == 24 and big.num_parameters() == model.num_parameters() + 16 * 8
    idx = torch.randint(0, 20, (2, 8))
    with torch.no_grad():
        torch.testing.assert_close(big(idx), model(idx))
    again = A.extend_context(model, 24)
    assert torch.equal(again.transformer.wpe.weight, big.transformer.wpe.weight)  # reproducible
    with pytest.raises(ValueError, match="block_size must be"):
        A.extend_context(model, 4)


def test_loss_per_position_matches_a_direct_computation():
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=6, vocab_size=11, n_layer=1, n_head=1, n_embd=4))
    tokens = torch.randint(0, 11, (7,))
    got = A.loss_per_position(model, tokens, n_windows=1)
    with torch.no_grad():
        want = F.cross_entropy(model(tokens[None, :-1])[0], tokens[1:], reduction="none")
    torch.testing.assert_close(got, want)
    assert model.training  # mode restored
    assert A.loss_per_position(model, torch.randint(0, 11, (50,)), seq_len=4, n_windows=5, batch_size=2).shape == (4,)
    with pytest.raises(ValueError, match="seq_len must be in"):
        A.loss_per_position(model, tokens, seq_len=7)
    with pytest.raises(ValueError, match="at least seq_len"):
        A.loss_per_position(model, tokens[:3])


def test_plots_return_figures():
    import matplotlib.pyplot as plt

    from helpers.plots import architecture as P

    shares = {n: A.component_counts(c) for n, c in A.GPT2_CONFIGS.items()}
    cost = {"naive": [{"seq_len": t, "seconds": 1e-6 * t * t, "peak_bytes": 4 * t * t} for t in (8, 16, 32)]}
    fits = {"naive": A.fit_quadratic([8, 16, 32], [r["seconds"] for r in cost["naive"]])}
    grid = [{"data": d, "n_layer": n, "n_embd": c, "train_loss": 1.0 + n, "val_loss": 2.0 + n}
            for d in ("small", "large") for n in (1, 2) for c in (16, 32)]
    drop = [{"dropout": p, "train_loss": 1 + p, "val_loss": 2 - p} for p in (0.0, 0.2, 0.5)]
    figs = [
        P.plot_parameter_shares(shares),
        P.plot_memory(A.memory_table(A.GPT2_PARAMETERS)),
        P.plot_attention_cost(cost, fits),
        P.plot_train_vs_val(grid, x="n_layer", line="n_embd", panel="data"),
        P.plot_loss_per_position(torch.rand(20), 10),
        P.plot_dropout(drop),
    ]
    assert all(isinstance(f, Figure) for f in figs)

    def labelled(ax):  # {legend label: (x, y)} of the labelled lines
        return {ln.get_label(): (list(ln.get_xdata()), list(ln.get_ydata()))
                for ln in ax.get_lines() if not ln.get_label().startswith("_")}

    # a stacked bar per model and component, and each model's bars add up to all of its parameters
    ax = figs[0].axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == list(shares)
    assert len(ax.patches) == len(shares) * len(shares["small"])
    small = [p.get_height() for p in ax.patches if abs(p.get_x() + p.get_width() / 2) < 1e-9]
    assert sum(small) == pytest.approx(1.0)
    assert small[0] == pytest.approx(shares["small"]["embeddings"]["weights"] / A.GPT2_PARAMETERS["small"])
    # one bar per model and precision; the fp32 bar of small is its bytes in GB, on a log axis
    mem = figs[1].axes[0]
    assert len(mem.patches) % len(A.GPT2_PARAMETERS) == 0 and mem.get_yscale() == "log"
    assert mem.patches[0].get_height() == pytest.approx(A.memory_table(A.GPT2_PARAMETERS)[0]["fp32"] / 1e9)
    # measured times (ms) and the fitted curve, then the memory (MB) on log-log axes
    time_ax, mem_ax = figs[2].axes
    assert labelled(time_ax)["naive"][1] == pytest.approx([1e3 * r["seconds"] for r in cost["naive"]])
    assert any("fit" in k for k in labelled(time_ax)) and mem_ax.get_xscale() == mem_ax.get_yscale() == "log"
    # one panel per data size, a train and a validation line per width with the grid's losses
    assert [a.get_title() for a in figs[3].axes] == ["data = small", "data = large"]
    for a in figs[3].axes:
        lines = labelled(a)
        assert len(lines) == 4 and lines["n_embd=16 train"] == ([1, 2], [2.0, 3.0])
        assert lines["n_embd=32 validation"] == ([1, 2], [3.0, 4.0])
    assert any("10" in k for k in labelled(figs[4].axes[0])), "the end of the trained positions is marked"
    assert len(figs[4].axes[0].get_lines()[0].get_xdata()) == 20
    drops = labelled(figs[5].axes[0])
    assert drops["validation"] == ([0.0, 0.2, 0.5], [2.0, 1.8, 1.5]) and drops["train"][1] == [1.0, 1.2, 1.5]
    assert any("0.5" in k for k in drops if k.startswith("best"))
    plt.close("all")
