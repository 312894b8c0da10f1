"""The cheat sheets: CHEATSHEET.md generated from helpers.cheatsheet, every notebook showing its own, and the
library defaults they cite equal to what the installed packages do."""

import dataclasses
import inspect
import json

import pytest

from helpers import cheatsheet as cs
from helpers.glossary import NOTEBOOKS

MAIN = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def _cells(path):
    return [(c["cell_type"], "".join(c["source"])) for c in json.loads(path.read_text(encoding="utf-8"))["cells"]]


def test_cheatsheet_md_is_generated():
    assert cs.CHEATSHEET_MD.read_text(encoding="utf-8") == cs.render_all(), \
        "CHEATSHEET.md is stale: run python -m helpers.cheatsheet"


def test_one_sheet_per_notebook():
    assert sorted(cs.SHEETS) == [p.stem for p in MAIN]


@pytest.mark.parametrize("path", MAIN + [NOTEBOOKS / "solutions" / p.name for p in MAIN],
                         ids=lambda p: str(p.relative_to(NOTEBOOKS)))
def test_notebook_shows_its_sheet_right_before_the_glossary(path):
    cells = _cells(path)
    kind, src = cells[-2]
    assert kind == "code" and f'cheat_sheet("{path.stem}")' in src, f"{path.name}: cheat sheet cell before the glossary"
    assert cells[-1][1].startswith("## Glossary")


def test_every_row_is_sourced_and_every_default_exists():
    for name, knobs in cs.SHEETS.items():
        for k in knobs:
            assert k.name and k.changes and k.typical, (name, k)
            assert all(r in cs.REFERENCES for r in k.refs), (name, k.refs)
            assert k.refs or k.defaults, f"{name}: {k.name} has neither a source for its range nor a library default"
            for lib, key in k.defaults:
                cs.default(lib, key)  # KeyError when the data does not hold it
        text = cs.render_sheet(name)
        for k in knobs:
            for r in k.refs:  # each cited source is listed under the table
                assert f"[{list(cs.REFERENCES).index(r) + 1}] {cs.REFERENCES[r]}" in text


def test_unknown_notebook_is_refused():
    with pytest.raises(ValueError, match="08_learning_rate"):
        cs.cheat_sheet("08_learnin_rate")


def test_sheet_renders_as_markdown():
    sheet = cs.cheat_sheet("08_learning_rate")
    assert sheet._repr_markdown_().startswith("## Cheat sheet") and "| learning rate |" in str(sheet)
    assert "TrainingArguments.learning_rate`: 5e-05" in str(sheet)


# ---- the defaults against the installed packages -------------------------------------------------------

def _split(key):
    cls, field = key.rsplit(".", 1)
    return cls, field


def test_transformers_defaults():
    import transformers

    args = {f.name: f.default for f in dataclasses.fields(transformers.TrainingArguments)}
    if hasattr(transformers.GenerationConfig, "_get_default_generation_params"):
        generation = transformers.GenerationConfig._get_default_generation_params()
    else:
        generation = vars(transformers.GenerationConfig())
    configs = {"GPT2Config": transformers.GPT2Config(), "LlamaConfig": transformers.LlamaConfig()}
    early = inspect.signature(transformers.EarlyStoppingCallback.__init__).parameters
    for key, ours in cs.TRANSFORMERS.items():
        cls, field = _split(key)
        if cls == "TrainingArguments":
            theirs = args[field]
        elif cls == "GenerationConfig":
            theirs = generation[field]
        elif cls == "EarlyStoppingCallback":
            theirs = early[field].default
        elif field == "rope_theta" and not hasattr(configs[cls], "rope_theta"):  # version 5: in rope_parameters
            theirs = configs[cls].rope_parameters["rope_theta"]
        else:
            theirs = getattr(configs[cls], field)
        assert theirs == ours, f"{key}: transformers has {theirs!r}, the cheat sheet says {ours!r}"


def test_pytorch_defaults():
    import torch
    from torch.ao.quantization import quantize_dynamic

    where = {"nn.Linear": torch.nn.Linear.__init__, "nn.Dropout": torch.nn.Dropout.__init__,
             "optim.AdamW": torch.optim.AdamW.__init__, "optim.SGD": torch.optim.SGD.__init__,
             "autograd.gradcheck": torch.autograd.gradcheck, "ao.quantization.quantize_dynamic": quantize_dynamic}
    for key, ours in cs.PYTORCH.items():
        fn, field = _split(key)
        theirs = inspect.signature(where[fn]).parameters[field].default
        theirs = str(theirs) if isinstance(theirs, torch.dtype) else theirs
        assert theirs == ours, f"{key}: PyTorch has {theirs!r}, the cheat sheet says {ours!r}"


def test_peft_defaults():
    from peft import LoraConfig

    config = LoraConfig()
    for key, ours in cs.PEFT.items():
        assert getattr(config, _split(key)[1]) == ours, key


def test_optuna_defaults():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    for key, ours in cs.OPTUNA.items():
        cls, field = _split(key)
        if cls == "create_study":
            theirs = type(getattr(study, field)).__name__
        else:
            theirs = inspect.signature(getattr(optuna.samplers, cls, None) or getattr(optuna.pruners, cls)).parameters[field].default
        assert theirs == ours, f"{key}: Optuna has {theirs!r}, the cheat sheet says {ours!r}"


def test_gguf_block_sizes():
    import gguf

    for key, ours in cs.GGUF.items():
        block, _ = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[_split(key)[0]]]
        assert block == ours, key


def test_sampling_defaults_come_from_the_sampler_data():
    from helpers.sampling import LIBRARY_DEFAULTS

    for lib, key in (("llama.cpp", "top_k"), ("llama.cpp", "min_p"), ("OpenAI API", "temperature")):
        assert cs.default(lib, key) == str(LIBRARY_DEFAULTS[lib][key])
    assert cs.default("transformers generate", "top_k") == str(LIBRARY_DEFAULTS["transformers"]["top_k"])
