"""Checkpoints: exact round trips, tied weights, atomic saves and clear errors for broken files."""

from __future__ import annotations

import json
import os

import pytest
import torch

from helpers import checkpoints
from helpers.checkpoints import (
    BASE_MODEL_DIR,
    load_base_model,
    load_checkpoint,
    save_checkpoint,
)
from helpers.model import GPT, GPTConfig
from helpers.tokenizer import BPETokenizer

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tok() -> BPETokenizer:
    return BPETokenizer.train("the cat sat on the mat. the dog sat on the log. " * 20, 280)


@pytest.fixture()
def model(tok, tiny_gpt) -> GPT:
    return tiny_gpt(vocab_size=tok.vocab_size, n_layer=2)


@pytest.fixture()
def saved(tmp_path, model, tok):
    return save_checkpoint(tmp_path / "ckpt", model, tok, extra={"steps": 5, "val_loss": 1.25})


def test_round_trip(saved, model, tok):
    assert sorted(os.listdir(saved)) == ["config.json", "extra.json", "model.safetensors", "tokenizer.json"]
    loaded, tok2, extra = load_checkpoint(saved, device="cpu")
    x = torch.randint(0, tok.vocab_size, (2, 10))
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert loaded.lm_head.weight is loaded.transformer.wte.weight  # still tied after loading
    assert not loaded.training
    assert tok2.merges == tok.merges and extra == {"steps": 5, "val_loss": 1.25}


def test_tied_weight_stored_once(saved):
    from safetensors import safe_open

    with safe_open(str(saved / "model.safetensors"), "pt") as f:
        names = set(f.keys())
        assert json.loads(f.metadata()["tied"]) == {"lm_head.weight": "transformer.wte.weight"}
    assert "transformer.wte.weight" in names and "lm_head.weight" not in names


def test_without_tokenizer_and_overwrite(tmp_path, model, tok):
    d = save_checkpoint(tmp_path / "a", model)
    _, t, extra = load_checkpoint(d)
    assert t is None and extra == {}
    with torch.no_grad():
        model.transformer.wte.weight.add_(1.0)
    save_checkpoint(d, model, tok)  # replaces the old checkpoint
    loaded, t, _ = load_checkpoint(d)
    assert t is not None and torch.equal(loaded.transformer.wte.weight, model.transformer.wte.weight)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]  # no temp dirs left behind


def test_interrupted_save_keeps_old_checkpoint(saved, model, monkeypatch):
    before = (saved / "model.safetensors").read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(checkpoints, "_write_json", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(saved, model)
    assert (saved / "model.safetensors").read_bytes() == before
    load_checkpoint(saved)
    assert [p.name for p in saved.parent.iterdir()] == ["ckpt"]


def test_refuses_foreign_directory(tmp_path, model):
    (tmp_path / "notes.txt").write_text("precious")
    with pytest.raises(ValueError, match="notes.txt"):
        save_checkpoint(tmp_path, model)
    assert (tmp_path / "notes.txt").read_text() == "precious"


@pytest.mark.parametrize("name", ["model.safetensors", "config.json"])
def test_missing_file(saved, name):
    (saved / name).unlink()
    with pytest.raises(FileNotFoundError, match=rf"{name}.*missing"):
        load_checkpoint(saved)


def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_checkpoint(tmp_path / "nowhere")


@pytest.mark.parametrize("keep", [0.5, 0.99, 10])
def test_truncated_weights(saved, keep):
    path = saved / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)] if keep < 1 else data[:keep])
    with pytest.raises(ValueError, match=r"model.safetensors.*truncated or corrupt"):
        load_checkpoint(saved)


def test_config_that_does_not_match_weights(saved):
    path = saved / "config.json"
    data = json.loads(path.read_text())
    data["config"]["n_embd"] = 32
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"model.safetensors.*does not match config.json.*shape"):
        load_checkpoint(saved)
    data["config"]["n_embd"] = 16
    data["config"]["n_layer"] = 3
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"does not match config.json: missing \['transformer.h.2"):
        load_checkpoint(saved)


def test_corrupt_json_files(saved):
    (saved / "config.json").write_text('{"format": "course-gpt-checkpoint", "conf')
    with pytest.raises(ValueError, match="config.json.*not valid JSON"):
        load_checkpoint(saved)
    (saved / "config.json").write_text(json.dumps({"format": "course-gpt-checkpoint", "config": {"n_embd": -1}}))
    with pytest.raises(ValueError, match="config.json.*invalid GPTConfig.*n_embd"):
        load_checkpoint(saved)


def test_corrupt_tokenizer(saved):
    (saved / "tokenizer.json").write_text("{")
    with pytest.raises(ValueError, match="tokenizer.json.*not valid JSON"):
        load_checkpoint(saved)


def test_bad_arguments(tmp_path, model, tok):
    with pytest.raises(ValueError, match="extra must hold only JSON values"):
        save_checkpoint(tmp_path / "x", model, extra={"t": torch.zeros(1)})
    with pytest.raises(ValueError, match="model must be a language model"):
        save_checkpoint(tmp_path / "x", torch.nn.Linear(2, 2))
    small = BPETokenizer.train("ab ab ab", 300)
    with pytest.raises(ValueError, match="vocab_size"):
        save_checkpoint(tmp_path / "x", model, small)
    assert not (tmp_path / "x").exists()


@pytest.mark.skipif(not (BASE_MODEL_DIR / "model.safetensors").exists(), reason="base model not built yet")
def test_base_model_loads_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model, tok = load_base_model("cpu")
    assert model.config.vocab_size == tok.vocab_size == 2048
    assert 500_000 < model.num_parameters() < 4_000_000
    size = sum(p.stat().st_size for p in BASE_MODEL_DIR.iterdir())
    assert size <= 10 * 2**20
    facts = checkpoints.base_model_facts()
    assert facts["val_loss"] < facts["unigram_loss"]
    ids = torch.tensor([tok.encode("Once upon a time, there was a")])
    with torch.no_grad():
        next_id = model(ids)[0, -1].argmax().item()
    assert tok.decode([next_id]).strip().isalpha()


def test_pretrain_measures():
    from helpers.pretrain import full_loss, unigram_loss

    assert unigram_loss(torch.tensor([0, 0, 1, 1]), 4) == pytest.approx(torch.log(torch.tensor(2.0)).item())
    assert unigram_loss(torch.tensor([3, 3, 3]), 4) == 0.0
    torch.manual_seed(0)
    m = GPT(GPTConfig(block_size=8, vocab_size=16, n_layer=1, n_head=1, n_embd=8))
    tokens = torch.randint(0, 16, (8 * 3 + 1,))
    expected = m.loss(tokens[:-1].view(3, 8), tokens[1:].view(3, 8)).item()
    assert full_loss(m, tokens, 8, batch_size=2) == pytest.approx(expected, rel=1e-5)


def test_saved_files_are_readable_by_others(saved):
    assert saved.stat().st_mode & 0o777 == 0o755
    assert all(f.stat().st_mode & 0o777 == 0o644 for f in saved.iterdir())
