"""No hand-typed measurements in the notebooks' prose.

A number in a markdown cell that looks measured (a loss or other decimal, a ratio, a percentage, a time, a
size, a throughput, an arrow such as "3.55 → 2.69", "20 of 24", "tenfold") must be one of two things:

- a **definition**: a setting, a formula constant, a published or cited figure, an example's given data.
  Each is listed in ``ALLOWED`` below with the literal phrase it appears in and the reason;
- **asserted**: a range stated in prose that a code cell of the same notebook asserts, in whatever mode it
  runs. Its ``ALLOWED`` entry has the kind ``"asserted"``, and the test checks that every bound of the phrase
  (or the ``values`` given for words such as "tenfold") is a literal in an ``assert`` statement.

A figure that comes from a run belongs in a code cell: printed, or rendered into Markdown from variables
(``display(Markdown(f"..."))``), so that a learner's own run (fast mode, another machine) shows its own numbers.

Not flagged, because they are definitions by their form: integers without a unit (section numbers, years,
layer counts, shapes like ``128 → 384``), a number right after the name of a setting ("temperature 0.8",
"top-p = 0.9", "lr 3e-3"), inline code and LaTeX math, version numbers (``2.13.0``), and bit widths.

The first markdown cell's "Runs in:" paragraph is skipped: the notebook budgets replace it with a generated
figure. Every entry of ``ALLOWED`` must still match its notebook, so the list cannot go stale.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")) + sorted((NOTEBOOKS / "solutions").glob("[0-9][0-9]_*.ipynb"))
KINDS = ("setting", "formula", "cited", "example", "asserted")


@dataclass(frozen=True)
class Allowed:
    phrase: str  # a literal substring of one of the notebook's markdown cells
    kind: str  # one of KINDS
    reason: str
    values: tuple[float, ...] = ()  # "asserted": the asserted numbers, when the phrase spells them in words


def setting(phrase: str, reason: str) -> Allowed:
    return Allowed(phrase, "setting", reason)


def formula(phrase: str, reason: str) -> Allowed:
    return Allowed(phrase, "formula", reason)


def cited(phrase: str, reason: str) -> Allowed:
    return Allowed(phrase, "cited", reason)


def example(phrase: str, reason: str) -> Allowed:
    return Allowed(phrase, "example", reason)


def asserted(phrase: str, reason: str, values: tuple[float, ...] = ()) -> Allowed:
    return Allowed(phrase, "asserted", reason, values)


ALLOWED: dict[str, list[Allowed]] = {
    "01_weights_and_biases": [
        example("nudge each input by 0.1", "the experiment's chosen step"),
        example("(×100)", "metres to centimetres, a unit conversion"),
        setting("at least 95% of", "the exercise's goal"),
    ],
    "02_backpropagation": [
        setting("at 0.9 and at 1.1 times that limit", "the two step sizes of the experiment, as multiples of the limit"),
        setting("At 1.1 times the limit", "the same setting, restated"),
    ],
    "03_tiny_gpt_end_to_end": [
        setting("**train** (90 %)", "the split ratio, a setting of helpers.corpus"),
        setting("**validation** (5 %)", "the split ratio"),
        setting("**test** (5 %)", "the split ratio"),
        formula("(about 1.1 million parameters)", "fixed by the configuration named in the sentence; the cell prints the exact count"),
        formula("ln 2048 ≈ 7.6", "the loss of a uniform guess over the vocabulary"),
        setting("T ≈ 2 babbles", "a temperature, named as a setting"),
    ],
    "04_inside_the_transformer": [
        setting("(4 layers × 4 heads)", "the base model's configuration"),
        formula("over 100 tokens has 4.6 nats", "ln 100, the entropy of a uniform distribution over 100 keys"),
        cited("(30 layers × 9)", "SmolLM2's published configuration"),
    ],
    "05_parameters_and_architecture": [
        cited("774M and 1.5B models", "GPT-2's published size labels"),
        cited('("1.5B" is 1.56 billion)', "the closed-form count of GPT-2 XL's published configuration"),
        formula("about 2.4 decimal digits", "8 significant bits × log10(2)"),
        formula("take 6.2 GB in fp32", "GPT-2 XL's closed-form count × 4 bytes"),
        formula("needs 24.9 GB before activations", "GPT-2 XL's closed-form count × 16 bytes (AdamW in fp32)"),
        asserted("to under 5 % in Llama-2-7B", "the family table's cell asserts the share < 0.05", (5,)),
        asserted("back above 10 %", "the family table's cell asserts 0.10 < share"),
        formula("grows fourfold when the length doubles", "the score matrix is length × length"),
        cited("typically between 0.1 and 0.5", "the usual dropout range (the course's curriculum)"),
    ],
    "06_sampling_temperature_top_k_top_p": [
        setting("above 1 % probability", "the threshold the table uses"),
        formula("is 1.000000 at every temperature", "softmax sums to one; the next cell asserts it"),
        asserted("more than tenfold beyond the base model's", "asserted: real > 10 * toy", (10,)),
        asserted("more than ten times as many tokens as", "asserted: top-p > 10 * top-k", (10,)),
        setting("reach 90 % of the", "top-p = 0.9, restated"),
        setting("to reach 90 % explodes", "top-p = 0.9, restated"),
        cited("top-p 0.95 and min-p 0.05", "llama.cpp's defaults, from its source"),
        cited("top-p 0.95 and min-p 0.05; the OpenAI", "llama.cpp's defaults, from its source"),
        setting("temperature 0 vs 0.2 vs 1.5", "settings to try"),
        setting("top-p 0.5 at temperature 1.5", "settings to try"),
        setting("such as 0.2 makes", "the claim's temperature"),
    ],
    "07_sampling_length_stops_penalties": [
        cited("| 1.0 (off) – 1.3 |", "the usual range of the repetition penalty"),
        example("penalty of 0.5 or even 2", "settings of the sweep"),
        formula("a logit of 15 loses 3.5 at", "15 - 15 / 1.3"),
        cited("useful range (1.0–1.3)", "the usual range of the repetition penalty"),
        example("the favourite's 0.4 and removes the 0.1 token", "the worked example's given probabilities"),
        setting("(temperature 1.0, top-p 0.95, min-p 0.05, frequency and presence penalty 0.3", "the preset's values"),
        setting("used 1.1", "the old preset's value"),
        setting("to reach 0.9", "the worked example's top-p"),
    ],
    "08_learning_rate": [
        formula("≈ 7.6 nats", "ln 2048, the vocabulary size"),
        setting("a spread of 0.02", "the model's initialisation standard deviation"),
        setting("**too high (0.1)**", "a learning rate of the sweep's grid"),
        setting("**much too high (0.3)**", "a learning rate of the sweep's grid"),
        setting("**far too high (1.0)**", "a learning rate of the sweep's grid"),
        example("steps of 0.001", "a grid spacing, named to be rejected"),
        setting("the two runs at 0.3", "the peak learning rate of the schedule runs"),
        setting("within **0.1 nats** of the best", "the tolerance the exercise uses"),
        setting("the constant 0.3", "the peak learning rate of the schedule runs"),
    ],
    "09_batch_size_and_optimizers": [
        setting("a threshold (here 1.0)", "the clipping threshold"),
    ],
    "10_regularization_and_early_stopping": [
        setting("the decay is strong (1.0)", "the weight decay of the run"),
        formula("shrinks the weights by 1 %", "lr × weight decay = 0.01 × 1.0"),
        cited("Typical rates are 0.1-0.5", "the usual dropout range"),
        example("(The 4.4 would", "the exercise's given losses"),
    ],
    "11_hyperparameter_optimization": [
        formula("90 % of uniformly drawn values", "the share of [1e-4, 1e-1] above 1e-2 on a linear scale"),
        setting("between 0 and 0.2", "the range the exercise asks for"),
        setting("the weight of `y` is 1 %", "the toy objective's y weight (0.01)"),
        setting("The grid is 4 × 4", "16 trials on a square grid"),
        example("(true loss 2.0)", "the thought experiment's chosen true loss"),
    ],
    "12_fine_tuning_and_lora": [
        formula("an 11.5M-parameter GPT", "the benchmark's configuration, counted by the closed form"),
        formula("need over 2 GB for weights", "SmolLM2's 135M parameters × 16 bytes"),
    ],
    "13_quantization": [
        formula("about 4.5 standard deviations", "the expected maximum of 65,000 normal draws"),
        setting("(512 x 128)", "a weight's shape"),
        cited("| 8.5 |", "GGUF Q8_0's bits per weight, from its block layout"),
        cited("| 5.0 |", "GGUF Q4_1's bits per weight, from its block layout"),
        cited("PyTorch 2.13", "a version number"),
        formula("about a quarter at 8 bits and below a fifth at 4 bits", "bytes per weight of each scheme, scales included"),
        asserted("to within 0.02 nats", "section 3 asserts the gap < 0.02"),
        setting("1,536 x 576", "the shape of SmolLM2's MLP up projection"),
    ],
}

_NUM = r"\d[\d,]*(?:\.\d+)?(?:e-?\d+)?"
_WORDS = r"(?:two|three|four|five|six|seven|eight|nine|ten|twenty|fifty|hundred|thousand)"
_UNIT = (r"%|×|x\b|ms\b|µs\b|s\b|sec\b|seconds?\b|min(?![\w-])|minutes?\b|h\b|hours?\b|[kKMG]i?B\b|"
         r"tokens?/s\b|it/s\b|steps?/s\b|nats?\b")
MEASURED = re.compile("|".join(f"(?:{p})" for p in (
    rf"\d+\.\d+\s*(?:→|->|⟶)\s*{_NUM}|{_NUM}\s*(?:→|->|⟶)\s*\d+\.\d+",  # an arrow with a decimal on a side
    rf"(?<![\w.]){_NUM}\s*(?:{_UNIT})",  # a number with a unit
    rf"(?<![\w.])(?:×|x)\s*{_NUM}(?![\w.])",  # "×3", "x 1.5"
    r"(?<![\w.])\d+\.\d+(?:e-?\d+)?(?!\d|\.\d)",  # a bare decimal: a loss, a ratio, a probability
    r"(?<![\w.])\d+e-\d+(?=[^.;\n]{0,30}\b(?:full|fast) mode)",  # "3e-3 in full mode": a result per mode
    r"\b\d+ (?:out )?of (?:the )?\d+\b",  # "20 of 24"
    rf"\b{_WORDS}fold\b|\b\d+-?fold\b",
)), re.IGNORECASE)
# the name of a setting right before a number makes it the setting's value: "temperature 0.8", "top-p = 0.9"
SETTING_BEFORE = re.compile(
    r"(?:temperature|\bT|top-[kp]|min-p|\bp|penalty|\blr|\bLR|learning rate|dropout rate|decay|dropout|alpha|α|θ|"
    r"\btheta|rank|\br|seed|momentum|beta\d?|β\d?|clip|threshold|group size|bias|eps|ε)"
    r"s?\s*(?:=|≈|of|to|at|is|from|:)?\s*$",
    re.IGNORECASE,
)
VERSION = re.compile(r"\d+\.\d+\.\d+")


def _source(cell: dict) -> str:
    src = cell["source"]
    return src if isinstance(src, str) else "".join(src)


def _blank(match: re.Match) -> str:
    return " " * len(match.group())


def _checked_text(text: str, first: bool) -> str:
    """The markdown with code, math, versions (and the first cell's "Runs in" paragraph) blanked out."""
    text = re.sub(r"```.*?```", _blank, text, flags=re.DOTALL)
    text = re.sub(r"`[^`]*`", _blank, text)
    text = re.sub(r"\$\$.*?\$\$", _blank, text, flags=re.DOTALL)
    text = re.sub(r"\$[^$\n]*\$", _blank, text)
    text = re.sub(r"<[^>]+>", _blank, text)  # HTML tags and comments, link targets
    text = re.sub(r"\]\([^)]*\)", _blank, text)
    text = VERSION.sub(_blank, text)
    if first:  # the budget line is generated elsewhere
        text = re.sub(r"[^\n]*Runs in:?.*?(?:\n\s*\n|$)", _blank, text, flags=re.DOTALL)
    return text


def measured_numbers(text: str, first: bool = False) -> list[tuple[int, int, str]]:
    """(start, end, text) of every number in ``text`` that looks measured and is not a definition by form."""
    checked = _checked_text(text, first)
    found = []
    for m in MEASURED.finditer(checked):
        if SETTING_BEFORE.search(re.sub(r"\s+", " ", checked[max(0, m.start() - 30):m.start()])) or re.fullmatch(r"0\s*\D*", m.group()):
            continue  # a setting's value, or zero ("0 nats = one certain token")
        found.append((m.start(), m.end(), m.group()))
    return found


def _phrase(phrase: str) -> re.Pattern:
    """The phrase, with any run of whitespace matching any other (prose is wrapped at arbitrary places)."""
    return re.compile(r"\s+".join(re.escape(word) for word in phrase.split()))


def _numbers(phrase: str) -> list[float]:
    return [float(n.replace(",", "")) for n in re.findall(r"\d[\d,]*(?:\.\d+)?(?:e-?\d+)?", phrase)]


def _asserted_constants(cells: list[dict]) -> set[float]:
    """Every numeric literal inside an ``assert`` statement of the notebook's code cells."""
    values: set[float] = set()
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        code = "\n".join(line for line in _source(cell).splitlines() if not line.lstrip().startswith(("%", "!")))
        try:
            tree = ast.parse(code)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Assert):
                for sub in ast.walk(node.test):
                    if isinstance(sub, ast.Constant) and isinstance(sub.value, (int, float)) and not isinstance(sub.value, bool):
                        values.add(float(sub.value))
    return values


def _problems(path: Path) -> list[str]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    allowed = ALLOWED.get(path.stem, [])
    markdown = [(i, _source(c)) for i, c in enumerate(cells) if c["cell_type"] == "markdown"]
    problems = []
    for entry in allowed:
        if entry.kind not in KINDS:
            problems.append(f"ALLOWED entry {entry.phrase!r}: kind {entry.kind!r} is not one of {KINDS}")
        if not any(_phrase(entry.phrase).search(text) for _, text in markdown):
            problems.append(f"ALLOWED entry {entry.phrase!r} no longer appears in the prose: remove it")
    constants = _asserted_constants(cells)
    for entry in allowed:
        if entry.kind != "asserted":
            continue
        for v in entry.values or tuple(_numbers(entry.phrase)):
            if v not in constants and v / 100 not in constants:
                problems.append(f"{entry.phrase!r} is marked asserted, but no assert in a code cell uses {v:g}")
    first = markdown[0][0] if markdown else -1
    for i, text in markdown:
        covered = [m.span() for e in allowed for m in _phrase(e.phrase).finditer(text)]
        for start, end, number in measured_numbers(text, first=i == first):
            if any(a <= start and end <= b for a, b in covered):
                continue
            line = text[max(0, start - 60):end + 30].replace("\n", " ")
            problems.append(f"cell {i}: {number!r} looks measured: ...{line}...")
    return problems


@pytest.mark.parametrize("path", PATHS, ids=lambda p: str(p.relative_to(NOTEBOOKS)))
def test_no_hand_typed_measurements(path):
    problems = _problems(path)
    assert not problems, (
        f"{path.relative_to(NOTEBOOKS)}: render measured figures from variables (display(Markdown(f'...'))) or "
        "assert them as a range, and list definitions in ALLOWED with their reason:\n  " + "\n  ".join(problems))


@pytest.mark.parametrize("text, expected", [
    ("The loss fell from 3.55 → 2.69 in 20 of 24 trials.", ["3.55 → 2.69", "20 of 24"]),
    ("It took 4.5 min and 1.2 GB, 2× faster, at 1,234 tokens/s; 67 % of the mass.",
     ["4.5 min", "1.2 GB", "2×", "1,234 tokens/s", "67 %"]),
    ("a gap of 2.4e-7, more than tenfold", ["2.4e-7", "tenfold"]),
    ("- **good (3e-3 in full mode, 1e-2 in the shorter fast mode)**", ["3e-3", "1e-2"]),
    ("loss 2.56 vs 3.00", ["2.56", "3.00"]),
])
def test_scanner_catches_measurements(text, expected):
    assert [n for _, _, n in measured_numbers(text)] == expected


@pytest.mark.parametrize("text", [
    "## 3. Section 2 (2024)", "temperature 0.8, top-p = 0.9 and lr 3e-3", "`loss = 3.55`", "$\\ln 2048 \\approx 7.6$",
    "PyTorch 2.13.0", "0 nats = one certain token", "In case 1 min-p decides", "4 layers and 128 channels, (128 → 384)", "dropout rate 0.1",
])
def test_scanner_leaves_definitions_alone(text):
    assert measured_numbers(text) == []


def test_runs_in_paragraph_skipped_only_in_first_cell():
    text = "# 00\n\n**Runs in:** about 5 s on a laptop (2.4 min of CPU).\n\nThe loss is 3.2."
    assert [n for _, _, n in measured_numbers(text, first=True)] == ["3.2"]
    assert len(measured_numbers(text)) == 3


def _notebook(tmp_path: Path, markdown: str, code: str) -> Path:
    path = tmp_path / "99_example.ipynb"
    cells = [{"cell_type": "markdown", "source": "# 99\n\n**Runs in:** 1 s"}, {"cell_type": "code", "source": code},
             {"cell_type": "markdown", "source": markdown}]
    path.write_text(json.dumps({"cells": cells}), encoding="utf-8")
    return path


def test_asserted_phrase_needs_a_matching_assert_and_entries_must_match(tmp_path, monkeypatch):
    monkeypatch.setitem(ALLOWED, "99_example", [asserted("ends below 3.2", "the cell asserts it")])
    assert _problems(_notebook(tmp_path, "The loss ends below 3.2.", "assert loss < 3.2")) == []
    assert "no assert in a code cell uses 3.2" in _problems(_notebook(tmp_path, "The loss ends below 3.2.",
                                                                      "assert loss < 3.5"))[0]
    stale = _problems(_notebook(tmp_path, "The loss ends low.", "assert loss < 3.2"))
    assert any("no longer appears" in p for p in stale)
    monkeypatch.setitem(ALLOWED, "99_example", [])
    assert "'3.2' looks measured" in _problems(_notebook(tmp_path, "The loss ends below 3.2.", "assert loss < 3.2"))[0]
