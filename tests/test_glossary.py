"""GLOSSARY.md is generated from the notebooks' glossaries, and the German terms are the ones practitioners use."""

import json

import pytest

from helpers.glossary import (
    GLOSSARY_MD,
    NOTEBOOKS,
    course_glossary,
    notebook_glossary,
    parse_glossary,
    render,
)

MAIN = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def test_glossary_md_is_generated_from_the_notebooks():
    expected = render(course_glossary())
    assert GLOSSARY_MD.read_text(encoding="utf-8") == expected, "GLOSSARY.md is stale: run python -m helpers.glossary"


@pytest.mark.parametrize("path", MAIN, ids=lambda p: p.name)
def test_solution_has_the_same_glossary(path):
    assert notebook_glossary(path) == notebook_glossary(NOTEBOOKS / "solutions" / path.name)


def test_every_notebook_term_is_in_glossary_md():
    text = GLOSSARY_MD.read_text(encoding="utf-8")
    for path in MAIN:
        for english, german in notebook_glossary(path):
            assert f"| {english} | {german} |" in text, f"{path.name}: {english!r} missing from GLOSSARY.md"


def test_readme_links_the_glossary():
    assert "(GLOSSARY.md)" in (GLOSSARY_MD.parent / "README.md").read_text(encoding="utf-8")


def _all_pairs():
    return [(p.name, en, de) for p in MAIN for en, de in notebook_glossary(p)]


def test_the_corrected_terms():
    pairs = _all_pairs()
    german = {en.lower(): de for _, en, de in pairs}
    assert german["weight decay"] == "Gewichtszerfall (Weight Decay)"
    assert "Dropout-Rate" in german["dropout rate"]
    assert not any("Gewichtsabnahme" in de or "Ausfallrate" in de for _, _, de in pairs)
    top_p = german["nucleus sampling (top-p)"]
    assert top_p.startswith("Top-p-Sampling (Nukleus-Sampling)") and "wörtlich" in top_p and "Kernprobenahme" in top_p
    # "halbe Genauigkeit" is fp16's name; bf16 is a different format
    for _, en, de in pairs:
        if "halbe Genauigkeit" in de:
            assert "fp16" in en and "bf16" not in de, (en, de)
    # biases: "Bias (Bias-Term)"; "Verzerrung" only as the note on the statistical sense
    for name, en, de in pairs:
        if "bias" in en.lower() and "logit" not in en.lower():
            assert "Bias (Bias-Term)" in de, (name, en, de)
            assert "Verzerrung" not in de or "statistische" in de, (name, en, de)


def test_parser_rejects_a_row_without_german():
    with pytest.raises(ValueError, match="German"):
        parse_glossary("## Glossary\n\n| English | Deutsch |\n|---|---|\n| weight |  |\n")


def test_conflicting_translations_are_refused(tmp_path):
    def write(name, rows):
        cell = {"cell_type": "markdown", "metadata": {}, "source": "## Glossary\n\n| English | Deutsch |\n|---|---|\n" + rows}
        (tmp_path / name).write_text(json.dumps({"cells": [cell]}), encoding="utf-8")

    write("00_a.ipynb", "| weight decay | Gewichtszerfall (Weight Decay) |\n")
    write("01_b.ipynb", "| Weight decay | Gewichtsabnahme |\n")
    with pytest.raises(ValueError, match="one German term"):
        course_glossary(tmp_path)
