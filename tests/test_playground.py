"""The sampling playground's callbacks, driven from Python (no browser)."""

import pytest
import torch

pytest.importorskip("ipywidgets")
pytest.importorskip("matplotlib")

from helpers.model import GPT, GPTConfig  # noqa: E402
from helpers.tokenizer import BPETokenizer  # noqa: E402
from helpers.widgets.sampling import sampling_playground  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def playground():
    tok = BPETokenizer.train("Once upon a time a cat sat on a mat. The dog ran. " * 20, vocab_size=300)
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=32, vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=16)).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(20)  # a peaked distribution, so filters visibly cut it
    box = sampling_playground(model, tok, prompt="Once upon", top=10)
    box.controls["max_tokens"].value = 8
    return box


def test_starts_with_a_readout_a_chart_and_a_sample(playground):
    assert "T = 1.00" in playground.readout.value and "tokens can be drawn" in playground.readout.value
    assert playground.chart.value[:4] == b"\x89PNG"
    assert "finish_reason" in playground.sample.value and playground.error.value == ""
    for name in ("readout", "sample", "error", "chart"):
        assert f"playground-{name}" in getattr(playground, name)._dom_classes
    assert "playground-temperature" in playground.controls["temperature"]._dom_classes


def test_moving_temperature_changes_the_readout_and_the_chart(playground):
    before, chart = playground.readout.value, playground.chart.value
    playground.controls["temperature"].value = 0.3
    assert playground.readout.value != before and "T = 0.30" in playground.readout.value
    assert playground.chart.value != chart
    playground.controls["temperature"].value = 0.0
    assert "1 tokens can be drawn" in playground.readout.value  # greedy: one token left
    playground.controls["temperature"].value = 1.0


def test_filters_shrink_the_set_of_tokens(playground):
    def alive():
        return int(playground.readout.value.split(": ")[1].split(" tokens")[0])

    everything = alive()
    playground.controls["top_k"].value = 5
    assert alive() <= 5 < everything
    playground.controls["top_k"].value = 0
    playground.controls["min_p"].value = 0.5
    assert alive() < everything
    playground.controls["min_p"].value = 0.0


def test_invalid_combination_shows_the_message_not_a_traceback(playground):
    playground.controls["min_tokens"].value = 20  # > max_tokens = 8
    assert "min_tokens must be an int in [0, max_tokens=8], got 20" in playground.error.value
    playground.controls["min_tokens"].value = 0
    assert playground.error.value == ""
    playground.controls["prompt"].value = "cat " * 40  # longer than the 32-token window
    assert "context window" in playground.error.value
    playground.controls["prompt"].value = "Once upon"
    assert playground.error.value == ""


def test_seed_button_gives_a_new_sample_and_seed_reproduces(playground):
    playground.controls["temperature"].value = 1.5
    first = playground.sample.value
    playground.controls["seed"].value += 1
    playground.controls["seed"].value -= 1
    assert playground.sample.value == first
