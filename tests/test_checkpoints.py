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

# one thread for these tiny models, for this module only (set at import it would leak into other test files)
pytestmark = pytest.mark.usefixtures("one_thread")


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


def _strip_metadata(saved) -> None:
    """Rewrite the weights file as the first checkpoint format did: no config, no checksums."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = saved / "model.safetensors"
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    save_file(tensors, path, metadata={"format": meta["format"], "tied": meta["tied"]})


def test_config_that_does_not_match_weights(saved):
    _strip_metadata(saved)  # without the config in the weights file, the shapes are what is left to check
    load_checkpoint(saved)
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


def test_edited_config_with_the_same_shapes_is_refused(saved):
    path = saved / "config.json"
    data = json.loads(path.read_text())
    data["config"]["n_head"] = 1  # every tensor keeps its shape: only the stored config can tell
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"config.json.*differs.*n_head=1 in config.json but 2 in the weights"):
        load_checkpoint(saved)


@pytest.mark.parametrize("where", [0.1, 0.5, 0.9])
def test_flipped_bit_is_detected(saved, where):
    path = saved / "model.safetensors"
    data = bytearray(path.read_bytes())
    header = 8 + int.from_bytes(data[:8], "little")
    at = header + int((len(data) - header) * where)  # a byte inside the tensor data
    data[at] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"model.safetensors.*tensor '.*' does not match its checksum"):
        load_checkpoint(saved)


def test_non_dict_tied_metadata(saved):
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = saved / "model.safetensors"
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    for bad in ("true", "[1, 2]", '{"lm_head.weight": 3}'):
        save_file(tensors, path, metadata={**meta, "tied": bad})
        with pytest.raises(ValueError, match=r"model.safetensors.*metadata 'tied' must be a JSON object"):
            load_checkpoint(saved)


def test_file_instead_of_folder(saved):
    with pytest.raises(FileNotFoundError, match=r"model.safetensors.* is a file.*pass the folder .*ckpt"):
        load_checkpoint(saved / "model.safetensors")
    with pytest.raises(FileNotFoundError, match=r"is a file.*pass the folder"):
        checkpoints.load_checkpoint_meta(saved / "config.json")


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


# -- an interrupted save never loses the checkpoint: kill the saving process after every step ------------

_SAVE_AND_DIE = """
import os, signal, sys
import torch
from helpers import checkpoints
from helpers.model import GPT, GPTConfig

directory, stop = sys.argv[1], sys.argv[2]


def die(step):
    if step == stop:
        os.kill(os.getpid(), signal.SIGKILL)


checkpoints._after_step = die
torch.manual_seed(1)
model = GPT(GPTConfig(block_size=16, vocab_size=int(sys.argv[3]), n_layer=2, n_head=2, n_embd=16))
checkpoints.save_checkpoint(directory, model, extra={"which": "new"})
"""
STEPS = ["weights", "written", "marked", "moved_old", "placed", "cleaned"]


def _save_in_subprocess(directory, stop: str, vocab_size: int) -> int:
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", _SAVE_AND_DIE, str(directory), stop, str(vocab_size)],
                          env=env, cwd=root, capture_output=True, text=True, timeout=120)
    return done.returncode


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")
@pytest.mark.parametrize("stop", STEPS + ["never"])
def test_killed_save_loses_nothing(tmp_path, model, tok, stop):
    directory = save_checkpoint(tmp_path / "ckpt", model, tok, extra={"which": "old"})
    rc = _save_in_subprocess(directory, stop, tok.vocab_size)
    assert rc == (0 if stop == "never" else -9)
    loaded, _, extra = load_checkpoint(directory)  # finishes the interrupted save if there is one
    x = torch.randint(0, tok.vocab_size, (1, 8))
    if extra["which"] == "old":
        with torch.no_grad():
            assert torch.equal(loaded(x), model(x))
    else:
        torch.manual_seed(1)
        fresh = GPT(model.config)
        with torch.no_grad():
            assert torch.equal(loaded(x), fresh(x))
    # once the new checkpoint is marked complete (step 2), the save counts as done
    assert extra["which"] == ("old" if stop in ("weights", "written") else "new")
    save_checkpoint(directory, model, extra={"which": "third"})  # and saving again cleans up every leftover
    assert load_checkpoint(directory)[2] == {"which": "third"}
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")
def test_killed_first_save_is_recovered(tmp_path, tok):
    directory = tmp_path / "first"
    assert _save_in_subprocess(directory, "marked", tok.vocab_size) == -9
    assert not directory.exists()  # killed between its renames: only .first.new is there
    assert load_checkpoint(directory)[2] == {"which": "new"}
    assert checkpoints.load_checkpoint_meta(directory)[1] == {"which": "new"}


# -- what a checkpoint holds is the plain model: LoRA and quantised models are refused, merged ones round-trip

@pytest.mark.parametrize("targets", [["c_attn"], ["c_proj"], ["c_fc"], ["lm_head"], ["attn", "mlp", "lm_head"]])
def test_merged_lora_round_trips_exactly(tmp_path, model, tok, targets):
    from helpers.lora import apply_lora, remove_lora

    apply_lora(model, rank=2, alpha=4.0, targets=targets)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_()  # a trained adapter: B is no longer zero
    remove_lora(model, merge=True)
    loaded, _, _ = load_checkpoint(save_checkpoint(tmp_path / "m", model, tok))
    x = torch.randint(0, tok.vocab_size, (2, 10))
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    for name, t in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], t), name
    tied = loaded.lm_head.weight is loaded.transformer.wte.weight
    assert tied == ("lm_head" not in targets)


def test_refuses_lora_and_quantised_models(tmp_path, model):
    from helpers.lora import apply_lora, merge_lora
    from helpers.quantize import dequantize_model, quantize_model

    q = quantize_model(model, bits=8)
    with pytest.raises(ValueError, match=r"model is quantised.*dequantize_model"):
        save_checkpoint(tmp_path / "q", q)
    assert not (tmp_path / "q").exists()
    x = torch.randint(0, model.config.vocab_size, (1, 8))
    loaded, _, _ = load_checkpoint(save_checkpoint(tmp_path / "dq", dequantize_model(q)))
    with torch.no_grad():
        assert torch.allclose(loaded(x), q(x), atol=1e-5)
    apply_lora(model, rank=2, targets=["c_attn"])
    with pytest.raises(ValueError, match=r"model has LoRA adapters.*remove_lora.*lora_state_dict"):
        save_checkpoint(tmp_path / "l", model)
    merge_lora(model)  # merged, but still wrapped
    with pytest.raises(ValueError, match=r"model has LoRA adapters"):
        save_checkpoint(tmp_path / "l", model)
    assert not (tmp_path / "l").exists()


def test_extra_with_non_string_keys_is_refused(tmp_path, model):
    """JSON turns the key 1 into "1": the loaded extra would silently differ from the saved one."""
    for extra in ({1: "a"}, {"runs": [{2.5: 1}]}):
        with pytest.raises(ValueError, match=r"extra: dict keys must be strings"):
            save_checkpoint(tmp_path / "x", model, extra=extra)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("delta", [-1, 1])
def test_tokenizer_with_another_vocabulary_is_refused(saved, tok, delta):
    """The tokenizer file must have exactly the model's vocabulary: one id fewer leaves a row of the
    embedding that no text can reach, one more makes decode/encode produce ids the model cannot embed."""
    merges = tok.merges[:-1] if delta < 0 else [*tok.merges, (tok.vocab_size - 2, 97)]  # the last merged id + "a"
    other = BPETokenizer(merges)
    assert other.vocab_size == tok.vocab_size + delta
    other.save(saved / "tokenizer.json")
    with pytest.raises(ValueError, match=rf"tokenizer.json.*has vocab_size={tok.vocab_size + delta} but config.json says "
                                         rf"vocab_size={tok.vocab_size}"):
        load_checkpoint(saved)


def test_meta_reads_config_and_extra_without_the_weights(saved, model):
    (saved / "model.safetensors").write_bytes(b"not read")  # the meta must not touch the weights
    config, extra, has_tokenizer = checkpoints.load_checkpoint_meta(saved)
    assert config == model.config and extra == {"steps": 5, "val_loss": 1.25} and has_tokenizer is True
    (saved / "extra.json").unlink()
    (saved / "tokenizer.json").unlink()
    assert checkpoints.load_checkpoint_meta(saved)[1:] == ({}, False)


# -- what the save leaves behind, what it syncs, and which leftovers it removes -------------------------------

def test_save_syncs_every_file_and_folder_before_renaming(tmp_path, model, tok, monkeypatch):
    """A rename is durable only once the renamed folder's files, the folder itself and its parent
    have reached the disk: every one of them must be fsynced (on POSIX, folders too)."""
    synced: list[str] = []
    real = os.fsync

    def recording(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}") if os.path.exists("/proc/self/fd") else str(fd))
        return real(fd)

    if os.name != "posix" or not os.path.exists("/proc/self/fd"):
        pytest.skip("names open files through /proc")
    monkeypatch.setattr(checkpoints.os, "fsync", recording)
    directory = save_checkpoint(tmp_path / "ckpt", model, tok, extra={"a": 1})
    names = [os.path.basename(p) for p in synced]
    for f in ("model.safetensors", "config.json", "tokenizer.json", "extra.json"):
        assert names.count(f) == 1, f
    assert any(n.startswith(".ckpt.tmp-") for n in names), "the new folder itself"
    assert synced.count(str(tmp_path)) == 2, "the parent, after each of the two renames"
    assert directory.is_dir()


def test_pid_alive_asks_without_signalling(monkeypatch):
    import subprocess
    import sys

    # default signal handling in the child, even when this test runs under nohup (which ignores SIGHUP)
    child = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGHUP, signal.SIG_DFL); "
                              "signal.signal(signal.SIGINT, signal.SIG_DFL); time.sleep(30)"])
    try:
        assert checkpoints._pid_alive(child.pid) is True
        with pytest.raises(subprocess.TimeoutExpired):
            child.wait(timeout=0.5)  # signal 0 only asks; any real signal would have ended it
    finally:
        child.kill()
        child.wait()
    assert checkpoints._pid_alive(child.pid) is False  # ended and reaped
    assert checkpoints._pid_alive(os.getpid()) is True

    def not_allowed(pid, sig):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(checkpoints.os, "kill", not_allowed)
    assert checkpoints._pid_alive(child.pid) is True  # another user's process: alive, never deleted


def test_save_removes_leftovers_of_dead_saves_only(tmp_path, model):
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".ckpt.tmp-{dead.pid}-abc"
    running = tmp_path / f".ckpt.tmp-{os.getpid()}-xyz"
    other = tmp_path / ".other.tmp-1-abc"
    for d in (stale, running, other):
        d.mkdir()
    save_checkpoint(tmp_path / "ckpt", model)
    assert not stale.exists() and running.is_dir() and other.is_dir()


def test_load_base_model_names_the_missing_folder_and_the_rebuild(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoints, "BASE_MODEL_DIR", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"base model is missing from '.*nowhere'.*python -m helpers.pretrain "
                                                r"--out .*nowhere"):
        load_base_model()


def test_load_base_model_without_its_tokenizer(tmp_path, monkeypatch, model):
    monkeypatch.setattr(checkpoints, "BASE_MODEL_DIR", save_checkpoint(tmp_path / "base", model))
    with pytest.raises(FileNotFoundError, match=r"tokenizer file '.*base/tokenizer.json' is missing"):
        load_base_model("cpu")


def test_meta_names_a_corrupt_extra_file(saved):
    (saved / "extra.json").write_text("{")
    with pytest.raises(ValueError, match=r"^extra file '.*extra.json' is not valid JSON"):
        checkpoints.load_checkpoint_meta(saved)
    with pytest.raises(ValueError, match=r"^extra file '.*extra.json' is not valid JSON"):
        load_checkpoint(saved)


# -- every damaged weights file gets its own, complete message ---------------------------------------------

def _rewrite_weights(saved, edit_meta=None, edit_tensors=None) -> str:
    """Rewrite model.safetensors with its metadata and tensors passed through the given edits; returns its path."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = saved / "model.safetensors"
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    save_file(edit_tensors(tensors) if edit_tensors else tensors, path,
              metadata=edit_meta(meta) if edit_meta else meta)
    return str(path)


def test_weights_without_tied_metadata_load_when_nothing_is_tied(tmp_path, model):
    """Files from before the 'tied' entry existed have none: it means no tied tensors."""
    model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone() + 1.0)  # untied
    saved = save_checkpoint(tmp_path / "untied", model)
    _rewrite_weights(saved, lambda m: {k: v for k, v in m.items() if k != "tied"})
    loaded = load_checkpoint(saved)[0]
    assert torch.equal(loaded.lm_head.weight, model.lm_head.weight)
    assert loaded.lm_head.weight is not loaded.transformer.wte.weight


@pytest.mark.parametrize("key,value,kind", [
    ("sha256", "[1, 2]", "a JSON object {name: hex}"),
    ("sha256", '{"transformer.wte.weight": 5}', "a JSON object {name: hex}"),
    ("config", "[1, 2]", "a JSON object"),
])
def test_metadata_of_the_wrong_kind_is_named(saved, key, value, kind):
    import re

    path = _rewrite_weights(saved, lambda m: {**m, key: value})
    with pytest.raises(ValueError, match=f"^{re.escape(f'weights file {path!r}: metadata {key!r} must be {kind}, got ')}"):
        load_checkpoint(saved)


def test_checksums_naming_other_tensors_are_listed(saved):
    import re

    def edit(meta):
        sums = json.loads(meta["sha256"])
        dropped = sorted(sums)[0]
        del sums[dropped]
        sums |= {f"bogus{i}": "0" for i in range(4)}
        edit.names = sorted([dropped, *(f"bogus{i}" for i in range(4))])[:4]  # five differ: the first four named
        return {**meta, "sha256": json.dumps(sums)}

    path = _rewrite_weights(saved, edit)
    want = (f"weights file {path!r}: the checksums name {edit.names}, which do not match the tensors in the file "
            "(corrupt or edited); save the model again")
    with pytest.raises(ValueError, match=f"^{re.escape(want)}$"):
        load_checkpoint(saved)


def test_flipped_bit_message_is_complete(saved):
    import re

    path = _rewrite_weights(saved, edit_tensors=lambda t: {**t, "transformer.ln_f.weight": t["transformer.ln_f.weight"] + 1})
    want = (f"weights file {path!r}: tensor 'transformer.ln_f.weight' does not match its checksum "
            "(the file is corrupt: a changed bit or byte); save the model again")
    with pytest.raises(ValueError, match=f"^{re.escape(want)}$"):
        load_checkpoint(saved)


def test_tied_to_a_tensor_the_file_lacks(saved):
    import re

    path = _rewrite_weights(saved, lambda m: {**m, "tied": json.dumps({"lm_head.weight": "nowhere.weight"})})
    want = f"weights file {path!r}: lm_head.weight is tied to nowhere.weight, which the file lacks"
    with pytest.raises(ValueError, match=f"^{re.escape(want)}$"):
        load_checkpoint(saved)


def test_unknown_config_fields_are_named(saved):
    path = saved / "config.json"
    data = json.loads(path.read_text())
    data["config"]["n_embed"] = 16  # a typo of n_embd
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"config.json' holds an invalid GPTConfig: unknown GPTConfig fields "
                                         r"\['n_embed'\]; allowed: \['bias', 'block_size'"):
        load_checkpoint(saved)
    with pytest.raises(ValueError, match=r"^unknown GPTConfig fields \['n_embed', 'x'\]; allowed: \[.*'n_embd'"):
        GPTConfig.from_dict({**model_config_dict(), "n_embed": 16, "x": 1})


def model_config_dict() -> dict:
    return GPTConfig(block_size=8, vocab_size=16, n_layer=1, n_head=1, n_embd=8).to_dict()


def test_save_reports_its_steps_in_order(tmp_path, model, monkeypatch):
    steps: list[str] = []
    monkeypatch.setattr(checkpoints, "_after_step", steps.append)
    save_checkpoint(tmp_path / "ckpt", model)
    assert steps == [s for s in STEPS if s != "moved_old"]  # a first save has no old checkpoint to move
    steps.clear()
    save_checkpoint(tmp_path / "ckpt", model)
    assert steps == STEPS


def test_lora_refusal_names_the_first_adapter_and_both_ways_out(tmp_path, model):
    from helpers.lora import apply_lora

    apply_lora(model, rank=2, targets=["c_attn"])
    want = ("model has LoRA adapters (transformer.h.0.attn.c_attn.lora_A, ...): a checkpoint holds the plain model. "
            "Fold them in with helpers.lora.remove_lora(model) (merge_lora alone keeps the wrappers), or save the "
            "adapter alone with helpers.lora.lora_state_dict(model)")
    with pytest.raises(ValueError) as err:
        save_checkpoint(tmp_path / "l", model)
    assert str(err.value) == want


@pytest.mark.parametrize("content", [
    {"format": "course-gpt-checkpoint", "config": [1, 2]},  # the right format, no config object
    {"config": {"n_embd": 16}},  # a config object, no format
    {"format": "something-else", "config": {}},
    [1, 2],
])
def test_config_file_that_is_not_a_checkpoint_config(saved, content):
    import re

    path = saved / "config.json"
    path.write_text(json.dumps(content))
    want = (f"config file {str(path)!r} is not a checkpoint config (expected a JSON object with "
            "format='course-gpt-checkpoint' and a 'config' object)")
    for load in (load_checkpoint, checkpoints.load_checkpoint_meta):
        with pytest.raises(ValueError, match=f"^{re.escape(want)}$"):
            load(saved)


def test_corrupt_config_message_starts_with_what_it_is(saved):
    (saved / "config.json").write_text("{")
    with pytest.raises(ValueError, match=r"^config file '.*config.json' is not valid JSON \(truncated or corrupt\?\): "):
        load_checkpoint(saved)


def test_a_foreign_file_instead_of_a_folder(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"^checkpoint directory '.*weights.bin' is a file, not a checkpoint "
                                                r"folder; pass the folder that holds model.safetensors and config.json$"):
        load_checkpoint(path)


def test_config_differences_are_listed(saved):
    import re

    path = _rewrite_weights(saved, lambda m: {**m, "config": json.dumps(
        {**json.loads(m["config"]), "n_head": 1, "dropout": 0.5, "bias": False, "block_size": 8, "rope": True})})
    # the five differing fields sorted: bias, block_size, dropout, n_head, rope; the first three are named
    want = (f"config.json in {str(saved)!r} differs from the config saved with {path!r}: "
            "bias=True in config.json but False in the weights, block_size=16 in config.json but 8 in the weights, "
            "dropout=0.0 in config.json but 0.5 in the weights (was config.json edited?)")
    with pytest.raises(ValueError, match=f"^{re.escape(want)}$"):
        load_checkpoint(saved)


def test_a_field_only_the_weights_know_is_a_difference(saved):
    _rewrite_weights(saved, lambda m: {**m, "config": json.dumps({**json.loads(m["config"]), "rope": True})})
    with pytest.raises(ValueError, match=r"differs from the config saved with .*: rope=None in config.json but True "
                                         r"in the weights \(was config.json edited\?\)$"):
        load_checkpoint(saved)


@pytest.mark.parametrize("n_layer,side", [(4, "missing"), (1, "unexpected")])
def test_mismatched_weights_name_at_most_four_tensors(saved, n_layer, side):
    import re

    _strip_metadata(saved)
    path = saved / "config.json"
    data = json.loads(path.read_text())
    data["config"]["n_layer"] = n_layer
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"does not match config.json: missing \[.*\], unexpected \[.*\] \(was the "
                                         r"config edited, or the file from another model\?\)$") as err:
        load_checkpoint(saved)
    listed = re.search(rf"{side} (\[[^\]]*\])", str(err.value)).group(1)
    assert len(eval(listed)) == 4  # more than four differ (a whole layer): the first four are named


def test_load_checkpoint_puts_the_model_on_the_device_asked_for(saved):
    with pytest.raises(ValueError, match=r"^device must be one of .*got 'tpu'$"):
        load_checkpoint(saved, device="tpu")
    assert load_checkpoint(saved, device=torch.device("cpu"))[0].lm_head.weight.device.type == "cpu"


def test_extra_file_that_is_not_an_object(saved):
    import re

    (saved / "extra.json").write_text("[1, 2]")
    want = f"extra file {str(saved / 'extra.json')!r} must hold a JSON object"
    with pytest.raises(ValueError, match=f"^{re.escape(want)}$"):
        load_checkpoint(saved)


def test_quantised_refusal_names_the_first_integer_tensor_and_the_way_out(tmp_path, model):
    from helpers.quantize import quantize_model

    with pytest.raises(ValueError) as err:
        save_checkpoint(tmp_path / "q", quantize_model(model, bits=8))
    assert str(err.value) == (
        "model is quantised (transformer.wte.qdata holds integer codes): a checkpoint holds float weights. Save the "
        "float model (quantize_model returns a copy), or turn this one back into floats with "
        "helpers.quantize.dequantize_model(model)")


def test_json_files_are_utf8_and_readable(tmp_path, model):
    """config.json and extra.json are for people too: UTF-8 text with the characters themselves (not
    \\u escapes), one entry per line, ending in a newline; and they load back the same."""
    extra = {"note": "café ✓", "runs": [1, 2]}
    d = save_checkpoint(tmp_path / "c", model, extra=extra)
    raw = (d / "extra.json").read_bytes()
    assert "café ✓".encode() in raw and b"\\u" not in raw and raw.endswith(b"}\n")
    assert raw.count(b"\n") >= 5
    assert json.loads(raw.decode("utf-8")) == extra == load_checkpoint(d)[2]
    assert (d / "config.json").read_bytes().count(b"\n") > 5


def test_save_messages_name_the_value(tmp_path, model):
    with pytest.raises(ValueError, match=r"^model must be a language model \(helpers.interface.LanguageModel, e.g. a "
                                         r"helpers.model.GPT\), got Linear$"):
        save_checkpoint(tmp_path / "x", torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"^extra must be a dict of JSON values, got list$"):
        save_checkpoint(tmp_path / "x", model, extra=[1, 2])
    with pytest.raises(ValueError, match=r"^extra: dict keys must be strings \(JSON turns 1 into '1'\), got 1$"):
        save_checkpoint(tmp_path / "x", model, extra={1: "a"})
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match=rf"^directory '{tmp_path}/file' exists and is a file, not a directory$"):
        save_checkpoint(tmp_path / "file", model)
    crowded = tmp_path / "crowded"
    crowded.mkdir()
    for i in range(6):
        (crowded / f"n{i}.txt").write_text("")
    with pytest.raises(ValueError, match=rf"^directory '{crowded}' holds files that are not part of a checkpoint "
                                         r"\(n0.txt, n1.txt, n2.txt, n3.txt, n4.txt\); choose an empty or new directory$"):
        save_checkpoint(crowded, model)


def test_save_creates_missing_parent_folders(tmp_path, model):
    d = save_checkpoint(tmp_path / "a" / "b" / "ckpt", model)
    assert load_checkpoint(d)[0].config == model.config


# -- finishing an interrupted save, state by state (in-process: the kill tests above do it for real) ---------

def _two_checkpoints(tmp_path, model):
    """``ckpt`` saved with extra {"which": "old"} and a complete ``.ckpt.new`` with {"which": "new"}."""
    directory = save_checkpoint(tmp_path / "ckpt", model, extra={"which": "old"})
    save_checkpoint(tmp_path / "staging", model, extra={"which": "new"})
    os.replace(tmp_path / "staging", tmp_path / ".ckpt.new")
    return directory


def test_recover_moves_a_marked_new_checkpoint_into_place(tmp_path, model):
    directory = _two_checkpoints(tmp_path, model)
    assert checkpoints.load_checkpoint_meta(directory)[1] == {"which": "new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_recover_without_the_old_checkpoint(tmp_path, model):
    directory = _two_checkpoints(tmp_path, model)
    os.replace(directory, tmp_path / ".ckpt.old")  # killed after step 3: the old one moved aside
    assert load_checkpoint(directory)[2] == {"which": "new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_recover_puts_the_old_checkpoint_back_when_there_is_no_new_one(tmp_path, model):
    directory = save_checkpoint(tmp_path / "ckpt", model, extra={"which": "old"})
    os.replace(directory, tmp_path / ".ckpt.old")
    assert load_checkpoint(directory)[2] == {"which": "old"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_recover_deletes_a_leftover_old_checkpoint(tmp_path, model):
    directory = save_checkpoint(tmp_path / "ckpt", model, extra={"which": "current"})
    save_checkpoint(tmp_path / "staging", model, extra={"which": "stale"})
    os.replace(tmp_path / "staging", tmp_path / ".ckpt.old")  # killed after step 4, before step 5
    assert checkpoints.load_checkpoint_meta(directory)[1] == {"which": "current"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_a_save_finishes_an_earlier_interrupted_one_first(tmp_path, model):
    directory = _two_checkpoints(tmp_path, model)
    stale = tmp_path / ".ckpt.tmp-999999999-x"  # a pid that cannot run
    stale.mkdir()
    save_checkpoint(directory, model, extra={"which": "third"})
    assert load_checkpoint(directory)[2] == {"which": "third"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_a_failed_save_leaves_no_temporary_folder(tmp_path, model, monkeypatch):
    def crash(path, data):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoints, "_write_json", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path / "ckpt", model)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not (BASE_MODEL_DIR / "model.safetensors").exists(), reason="base model not built yet")
def test_load_base_model_passes_the_device_on():
    with pytest.raises(ValueError, match=r"^device must be one of .*got 'tpu'$"):
        load_base_model(device="tpu")


# -- states and races the tests above do not reach --------------------------------------------------------

def test_recover_with_a_leftover_old_next_to_a_marked_new(tmp_path, model):
    directory = _two_checkpoints(tmp_path, model)
    save_checkpoint(tmp_path / "staging", model, extra={"which": "older"})
    os.replace(tmp_path / "staging", tmp_path / ".ckpt.old")  # left by an earlier interrupted save
    assert load_checkpoint(directory)[2] == {"which": "new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_a_save_over_a_checkpoint_leaves_nothing_beside_it(tmp_path, model):
    directory = save_checkpoint(tmp_path / "ckpt", model, extra={"which": "first"})
    save_checkpoint(directory, model, extra={"which": "second"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    assert json.loads((directory / "config.json").read_text()) == {"format": checkpoints.FORMAT, "version": 2,
                                                                  "config": model.config.to_dict()}


def test_loading_leaves_stale_temporary_folders_to_the_next_save(tmp_path, model):
    directory = save_checkpoint(tmp_path / "ckpt", model)
    stale = tmp_path / ".ckpt.tmp-999999999-x"  # a pid that cannot run
    stale.mkdir()
    load_checkpoint(directory)
    assert stale.is_dir()  # loading only reads (and finishes a save); cleaning up is a saver's job
    save_checkpoint(directory, model)
    assert not stale.exists()


def test_a_running_savers_folder_is_kept_and_the_saver_left_alone(tmp_path, model):
    import subprocess
    import sys

    directory = save_checkpoint(tmp_path / "ckpt", model)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # another saving process
    try:
        busy = tmp_path / f".ckpt.tmp-{other.pid}-x"
        busy.mkdir()
        save_checkpoint(directory, model)
        assert busy.is_dir()  # its owner still runs
        assert other.poll() is None  # and checking it did not signal it
    finally:
        other.kill()
        other.wait()


def test_the_temporary_folder_sits_next_to_the_checkpoint(tmp_path, model, monkeypatch):
    # so that the final renames stay on one file system (a rename across file systems is no rename)
    seen = []
    monkeypatch.setattr(checkpoints, "_after_step", lambda step: seen.append(
        (step, sorted(p.name.split("-")[0] for p in tmp_path.iterdir()))))
    save_checkpoint(tmp_path / "ckpt", model)
    assert seen[0] == ("weights", [".ckpt.tmp"])
    assert ("marked", [".ckpt.new"]) in seen
    seen.clear()  # a second save moves the first aside under the name a later load looks for
    save_checkpoint(tmp_path / "ckpt", model)
    assert ("moved_old", [".ckpt.new", ".ckpt.old"]) in seen and ("placed", [".ckpt.old", "ckpt"]) in seen


def test_a_save_whose_move_another_process_finished_succeeds(tmp_path, model, monkeypatch):
    directory = save_checkpoint(tmp_path / "ckpt", model, extra={"which": "old"})
    real = os.replace

    def racing(src, dst):  # a load in another process moves .ckpt.new into place just before we do
        if str(src).endswith(".ckpt.new") and str(dst) == str(directory):
            real(src, dst)
            raise FileNotFoundError(src)
        return real(src, dst)

    monkeypatch.setattr(os, "replace", racing)
    save_checkpoint(directory, model, extra={"which": "new"})
    monkeypatch.setattr(os, "replace", real)
    assert load_checkpoint(directory)[2] == {"which": "new"}
