"""The attention explorer's callbacks, driven from Python (no browser), and the notebook-04 plots."""

import pytest
import torch

pytest.importorskip("ipywidgets")
pytest.importorskip("matplotlib")

from helpers.attention import attention_weights  # noqa: E402
from helpers.model import GPT, GPTConfig  # noqa: E402
from helpers.plots import attention as plots  # noqa: E402
from helpers.runtime import num_threads  # noqa: E402
from helpers.tokenizer import BPETokenizer  # noqa: E402
from helpers.widgets.attention import attention_explorer  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    with num_threads(1):
        yield


@pytest.fixture(scope="module")
def parts():
    tok = BPETokenizer.train("Once upon a time a cat sat on a mat. The dog ran. " * 20, vocab_size=300)
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=24, vocab_size=tok.vocab_size, n_layer=2, n_head=3, n_embd=24)).eval()
    return model, tok


@pytest.fixture
def explorer(parts):
    model, tok = parts
    return attention_explorer(model, tok, text="Once upon a time a cat sat on a mat.")


def _prev_score(box):
    return float(box.readout.value.split("previous-token score ")[1].split(",")[0])


def test_starts_with_a_map_of_layer_0_head_0(explorer, parts):
    model, tok = parts
    assert explorer.chart.value[:4] == b"\x89PNG" and explorer.error.value == ""
    assert "layer 0, head 0" in explorer.readout.value
    ids = torch.tensor(tok.encode("Once upon a time a cat sat on a mat."))
    expected = attention_weights(model, ids)[0, 0].diagonal(-1).mean()
    assert abs(_prev_score(explorer) - float(expected)) < 0.006  # the readout shows the head's own measure
    assert "explorer-chart" in explorer.chart._dom_classes


def test_moving_the_sliders_shows_another_head(explorer, parts):
    model, tok = parts
    ids = torch.tensor(tok.encode("Once upon a time a cat sat on a mat."))
    maps = attention_weights(model, ids)
    before = explorer.chart.value
    explorer.controls["layer"].value = 1
    explorer.controls["head"].value = 2
    assert "layer 1, head 2" in explorer.readout.value and explorer.chart.value != before
    assert abs(_prev_score(explorer) - float(maps[1, 2].diagonal(-1).mean())) < 0.006
    assert explorer.controls["head"].max == 2 and explorer.controls["layer"].max == 1


def test_a_text_too_long_shows_the_message_and_recovers(explorer):
    explorer.controls["text"].value = "cat " * 40  # longer than the 24-token window
    assert "block_size=24" in explorer.error.value
    explorer.controls["text"].value = "The dog ran."
    assert explorer.error.value == "" and "tokens</code>" in explorer.readout.value
    explorer.controls["text"].value = "a"
    assert "at least 2 tokens" in explorer.error.value


def test_plots_return_figures(parts):
    import matplotlib.pyplot as plt

    model, tok = parts
    w = attention_weights(model, torch.tensor(tok.encode("Once upon a time a cat sat.")))
    figs = [plots.plot_attention_map(w[0, 0], ["x"] * w.shape[-1], "t"), plots.plot_attention_grid(w),
            plots.plot_head_scores({"a": w.mean((-1, -2)), "b": w.amax((-1, -2))}),
            plots.plot_similarity(torch.eye(5)),
            plots.plot_loss_by_position({"a": torch.rand(40), "b": torch.rand(40)}, 20),
            plots.plot_loss_by_position({"a": torch.rand(40)}, None),
            plots.plot_kv_cache([{"model": m, "tokens": n, "bytes": 1e6 * n} for m in "ab" for n in (4, 8)]),
            plots.plot_step_times({"cache": [0.001, 0.002], "none": [0.003, 0.004]})]
    assert all(len(f.axes) >= 1 for f in figs)
    assert len(figs[1].axes) == 2 * 3  # one panel per layer and head
    with pytest.raises(ValueError, match="weights must be"):
        plots.plot_attention_grid(w[0])
    plt.close("all")


def test_head_scores_of_a_large_model_use_a_colour_bar():
    import matplotlib.pyplot as plt

    small = plots.plot_head_scores({"a": torch.rand(4, 4)})
    large = plots.plot_head_scores({"a": torch.rand(30, 9), "b": torch.rand(30, 9)})
    assert len(small.axes) == 1 and len(small.axes[0].texts) == 16  # every value written
    assert len(large.axes) == 4 and not large.axes[0].texts  # two maps + two colour bars
    with pytest.raises(ValueError, match="one shape"):
        plots.plot_head_scores({"a": torch.rand(3, 2), "b": torch.rand(2, 3)})
    plt.close("all")
