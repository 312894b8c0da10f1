"""The one-way flow of ``helpers`` (ARCHITECTURE.md): a module imports only from its own layer or lower
ones, the imports form no cycle, and only plots and widgets import matplotlib or ipywidgets.

Every import counts, also one written inside a function (a lazy import is still a dependency).
"""

import ast
from pathlib import Path

import pytest

HELPERS = Path(__file__).resolve().parents[1] / "helpers"

#: Each module (or package) of helpers and its layer, lowest first. A new module needs a line here.
LAYERS = {
    # 0: no course dependencies: the device and fast mode, the model interface, file formats, tables
    "runtime": 0, "check_env": 0, "interface": 0, "exercises": 0, "experiments": 0, "gguf_file": 0,
    "smollm2_file": 0,
    # the classroom tools: set-up, grading, the rendered course (no course modules imported; exercises runs grading)
    "setup": 0, "handout": 0, "grading": 0, "site": 0,
    "glossary": 0,  # GLOSSARY.md from the notebooks' glossaries
    "corpus": 1,  # text
    "tokenizer": 2, "byte_bpe": 2, "data": 2,  # text -> token ids
    "fused_loss": 3, "model": 3, "llama": 3,  # the two model families and their fused loss
    # the tools that use a model: training, sampling, adaptation, measuring, tuning, loading
    "optimizers": 4, "memory": 4, "schedules": 4, "train": 4, "lr_range": 4, "sampling": 4, "lora": 4,
    "quantize": 4, "tuning": 4, "checkpoints": 4, "architecture": 4, "neurons": 4, "pretrain": 4,
    "pretrained": 4, "attention": 4, "kv_cache": 4, "rotary": 4, "cheatsheet": 4, "weight_streaming": 4,
    "answers": 4,  # the exercises' expected values, derived through the modules above
    "distributed": 4, "cluster": 4,  # data-parallel training (torchrun) and Ray Tune around the tuning objective
    "plots": 5,  # figures
    "widgets": 6,  # interactive notebook controls
}
DRAWING = ("matplotlib", "ipywidgets")  # only plots and widgets may import these


def _modules() -> dict[str, Path]:
    """``helpers.x.y`` -> its file, for every module of the package."""
    out = {}
    for path in sorted(HELPERS.rglob("*.py")):
        parts = path.relative_to(HELPERS.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(path: Path, name: str) -> set[str]:
    """Every module ``path`` imports (absolute names; relative imports resolved against ``name``)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # from . import x / from .y import z
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}  # "from helpers import model" names a module
    return found


def _unit(module: str) -> str | None:
    """The key of LAYERS that ``helpers.<key>...`` belongs to (None for the package itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "helpers" else None


MODULES = _modules()


def _graph() -> dict[str, set[str]]:
    """Module -> the helpers modules it imports (only modules that exist)."""
    return {name: {m for m in _imports(path, name) if m in MODULES and m != name} for name, path in MODULES.items()}


def test_every_module_has_a_layer():
    missing = sorted({_unit(m) for m in MODULES} - set(LAYERS) - {None})
    assert not missing, f"add these helpers modules to LAYERS in {Path(__file__).name}: {missing}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_flow_one_way(name):
    unit = _unit(name)
    if unit is None or unit not in LAYERS:
        pytest.skip("the package itself, or a module without a layer (see the test above)")
    upward = [m for m in _graph()[name] if _unit(m) in LAYERS and LAYERS[_unit(m)] > LAYERS[unit]]
    assert not upward, f"{name} (layer {LAYERS[unit]}) imports from a higher layer: {sorted(upward)}"
    if unit not in ("plots", "widgets"):
        drawing = sorted(m for m in _imports(MODULES[name], name) if m.split(".")[0] in DRAWING)
        assert not drawing, f"{name} imports {drawing}; only helpers.plots and helpers.widgets may"


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1 and not nxt.startswith(node + ".") and not node.startswith(nxt + "."):
                cycle = path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
                pytest.fail(f"import cycle: {' -> '.join(cycle)}")
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_the_checks_catch_what_they_should(tmp_path):
    """The rules are not vacuous: an upward and a drawing import are seen, inside a function too."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from helpers.plots.training import plot_bars\n    import matplotlib.pyplot\n")
    found = _imports(bad, "helpers.model")
    assert "helpers.plots.training" in found and "matplotlib.pyplot" in found
    assert LAYERS[_unit("helpers.plots.training")] > LAYERS["model"]
    rel = tmp_path / "__init__.py"
    rel.write_text("from .filters import apply_top_k\nfrom ..train import train\n")
    assert {"helpers.sampling.filters", "helpers.train"} <= _imports(rel, "helpers.sampling")
