"""Saving and loading a model, its config and its tokenizer: safetensors + JSON, never pickle.

A checkpoint is a directory:

    model.safetensors   the weights (tied weights stored once)
    config.json         the GPTConfig that gives those weights their shapes
    tokenizer.json      the tokenizer (optional)
    extra.json          anything JSON the caller wants to keep (optional): steps, losses, ...

Pickle files can run code when loaded; safetensors files only hold numbers, so a checkpoint from
anywhere is safe to open. The weights file also records, in its metadata, the full config and a
SHA-256 checksum of every tensor; loading checks both, so a flipped bit or an edited
``config.json`` is reported instead of computing something else.

Replacing a checkpoint never loses it, even when the saving process is killed at any instant:

    1. the new checkpoint is written, complete, into a private ``.NAME.tmp-PID-*`` folder;
    2. that folder is renamed ``.NAME.new`` (one atomic rename: "the new checkpoint is complete");
    3. the old ``NAME`` is renamed ``.NAME.old``;
    4. ``.NAME.new`` is renamed ``NAME``;
    5. ``.NAME.old`` is deleted.

A save killed after step 2 counts as done: ``load_checkpoint`` (and the next save) finishes it by
moving ``.NAME.new`` into place; one killed before step 2 leaves the old checkpoint as it was. So a
load always finds the old or the new checkpoint, complete. Two processes saving to the same folder at the same time are not supported.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from helpers.interface import LanguageModel
from helpers.model import GPT, GPTConfig
from helpers.runtime import pick_device
from helpers.tokenizer import BPETokenizer

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
EXTRA_FILE = "extra.json"
FORMAT = "course-gpt-checkpoint"
BASE_MODEL_DIR = Path(__file__).resolve().parent / "assets" / "base_model"
_OURS = {MODEL_FILE, CONFIG_FILE, TOKENIZER_FILE, EXTRA_FILE}
# Called with the name of each step of a save as it completes (see the module docstring); tests
# use it to kill a saving process at every step. None in normal use.
_after_step: Callable[[str], None] | None = None


def _step(name: str) -> None:
    if _after_step is not None:
        _after_step(name)


def _side(directory: Path, kind: str) -> Path:
    """The sibling folder ``.NAME.new`` or ``.NAME.old`` used while ``directory`` is replaced."""
    return directory.parent / f".{directory.name}.{kind}"


def _fsync(path: Path) -> None:
    """Push a file's (or on POSIX a folder's) contents to the disk, so a power cut cannot undo a rename."""
    if path.is_dir() and os.name != "posix":
        return  # folders cannot be opened for syncing on Windows
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    if os.name != "posix":
        return True  # no cheap, harmless check elsewhere: never treat a folder as stale
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _recover(directory: Path, cleanup: bool = False) -> None:
    """Finish a save that was interrupted (see the module docstring).

    A complete ``.NAME.new`` (step 2 done) replaces ``NAME``; without one, a ``NAME`` that is missing
    gets ``.NAME.old`` back. With ``cleanup`` (at the start of a save) also delete the
    ``.NAME.tmp-PID-*`` folders of processes that no longer run.
    """
    new, old = _side(directory, "new"), _side(directory, "old")
    try:
        if new.is_dir():
            if directory.exists():
                shutil.rmtree(old, ignore_errors=True)
                os.replace(directory, old)
            os.replace(new, directory)
        elif not directory.exists() and old.is_dir():
            os.replace(old, directory)
    except FileNotFoundError:
        pass  # a save running right now made the same move first
    if directory.exists() and not new.exists():
        shutil.rmtree(old, ignore_errors=True)  # step 5 of a save that got past step 4
    if cleanup:
        for tmp in directory.parent.glob(f".{directory.name}.tmp-*"):
            pid = tmp.name.removeprefix(f".{directory.name}.tmp-").split("-")[0]
            if pid.isdigit() and not _pid_alive(int(pid)):
                shutil.rmtree(tmp, ignore_errors=True)


def _tensors_to_save(model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The state dict with each shared tensor kept once, and a map {dropped name: kept name}.

    safetensors refuses two names for one storage, and the GPT's lm_head.weight *is* wte.weight.
    """
    tensors: dict[str, torch.Tensor] = {}
    tied: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    for name, t in model.state_dict().items():
        key = (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.dtype)
        if key in seen:
            tied[name] = seen[key]
            continue
        seen[key] = name
        tensors[name] = t.detach().to("cpu").contiguous()
    return tensors, tied


def _tensor_sha256(t: torch.Tensor) -> str:
    """SHA-256 of a tensor's bytes (its dtype and shape are checked separately, by the file format)."""
    return hashlib.sha256(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()).hexdigest()


def _check_plain(model: torch.nn.Module) -> None:
    """Refuse a model whose state dict is not the plain model's: LoRA-wrapped or quantised."""
    names = list(model.state_dict())
    lora = [n for n in names if n.endswith((".lora_A", ".lora_B"))]
    if lora:
        raise ValueError(
            f"model has LoRA adapters ({lora[0]}, ...): a checkpoint holds the plain model. Fold them in with "
            "helpers.lora.remove_lora(model) (merge_lora alone keeps the wrappers), or save the adapter "
            "alone with helpers.lora.lora_state_dict(model)")
    quantised = [n for n, t in model.state_dict().items() if n.endswith(".qdata") or not t.is_floating_point()]
    if quantised:
        raise ValueError(
            f"model is quantised ({quantised[0]} holds integer codes): a checkpoint holds float weights. "
            "Save the float model (quantize_model returns a copy), or turn this one back into floats with "
            "helpers.quantize.dequantize_model(model)")


def _non_str_key(value: object) -> object | None:
    """The first dict key, at any depth, that is not a str (None if there is none)."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                return k
            found = _non_str_key(v)
            if found is not None:
                return found
    elif isinstance(value, (list, tuple)):
        for v in value:
            found = _non_str_key(v)
            if found is not None:
                return found
    return None


def _write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def save_checkpoint(directory: str | Path, model: LanguageModel, tokenizer: BPETokenizer | None = None,
                    extra: dict | None = None) -> Path:
    """Write ``model`` (+ ``tokenizer`` and JSON-able ``extra``) to ``directory``, atomically.

    An existing checkpoint in ``directory`` is replaced (never lost, see the module docstring); a
    directory holding other files is refused rather than deleted. A LoRA-wrapped or quantised
    model is refused too: the message says how to turn it into a plain one.
    """
    directory = Path(directory)
    if not isinstance(model, torch.nn.Module) or not isinstance(model, LanguageModel):
        raise ValueError(f"model must be a language model (helpers.interface.LanguageModel, e.g. a "
                         f"helpers.model.GPT), got {type(model).__name__}")
    if tokenizer is not None and tokenizer.vocab_size != model.config.vocab_size:
        raise ValueError(f"tokenizer has vocab_size={tokenizer.vocab_size} but the model has "
                         f"vocab_size={model.config.vocab_size}; they must match")
    if extra is not None:
        if not isinstance(extra, dict):
            raise ValueError(f"extra must be a dict of JSON values, got {type(extra).__name__}")
        try:
            json.dumps(extra)
        except (TypeError, ValueError) as err:
            raise ValueError(f"extra must hold only JSON values (str, numbers, lists, dicts): {err}") from err
        bad_key = _non_str_key(extra)
        if bad_key is not None:  # JSON would turn it into a string: the loaded extra would differ
            raise ValueError(f"extra: dict keys must be strings (JSON turns {bad_key!r} into {str(bad_key)!r}), "
                             f"got {bad_key!r}")
    if directory.exists():
        if not directory.is_dir():
            raise ValueError(f"directory {str(directory)!r} exists and is a file, not a directory")
        others = sorted(p.name for p in directory.iterdir() if p.name not in _OURS)
        if others:
            raise ValueError(f"directory {str(directory)!r} holds files that are not part of a checkpoint "
                             f"({', '.join(others[:5])}); choose an empty or new directory")
    _check_plain(model)
    directory.parent.mkdir(parents=True, exist_ok=True)
    _recover(directory, cleanup=True)
    new, old = _side(directory, "new"), _side(directory, "old")
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-{os.getpid()}-", dir=directory.parent))
    try:
        tensors, tied = _tensors_to_save(model)
        metadata = {"format": FORMAT, "tied": json.dumps(tied), "config": json.dumps(model.config.to_dict()),
                    "sha256": json.dumps({name: _tensor_sha256(t) for name, t in tensors.items()})}
        save_file(tensors, tmp / MODEL_FILE, metadata=metadata)
        _step("weights")
        _write_json(tmp / CONFIG_FILE, {"format": FORMAT, "version": 2, "config": model.config.to_dict()})
        if tokenizer is not None:
            tokenizer.save(tmp / TOKENIZER_FILE)
        if extra is not None:
            _write_json(tmp / EXTRA_FILE, extra)
        os.chmod(tmp, 0o755)  # mkdtemp makes a private directory; a checkpoint is meant to be shared
        for f in tmp.iterdir():
            os.chmod(f, 0o644)
            _fsync(f)
        _fsync(tmp)
        _step("written")
        os.replace(tmp, new)  # from here on the new checkpoint counts as saved
        _fsync(directory.parent)
        _step("marked")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        os.replace(directory, old)
        _step("moved_old")
    except FileNotFoundError:
        pass  # a first save, or a load in another process finished the move
    try:
        os.replace(new, directory)
    except FileNotFoundError:
        if not directory.is_dir():  # (a load in another process may have finished the move for us)
            raise
    _fsync(directory.parent)
    _step("placed")
    shutil.rmtree(old, ignore_errors=True)
    _step("cleaned")
    return directory


def _read_json(path: Path, what: str) -> object:
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {str(path)!r} is missing")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{what} file {str(path)!r} is not valid JSON (truncated or corrupt?): {err}") from err


def _read_config(directory: Path) -> GPTConfig:
    path = directory / CONFIG_FILE
    data = _read_json(path, "config")
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("config"), dict):
        raise ValueError(f"config file {str(path)!r} is not a checkpoint config "
                         f"(expected a JSON object with format={FORMAT!r} and a 'config' object)")
    try:
        return GPTConfig.from_dict(data["config"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"config file {str(path)!r} holds an invalid GPTConfig: {err}") from err


def _read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str], dict | None]:
    """``(tensors, tied, config)`` of a weights file: every tensor (tied names filled in), the map
    {dropped name: kept name}, and the config stored in its metadata (None in files from before
    configs were stored). Checksums, where the file has them, are verified."""
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} is missing")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tied = json.loads(meta.get("tied", "{}"))
            sums = json.loads(meta["sha256"]) if "sha256" in meta else None
            config = json.loads(meta["config"]) if "config" in meta else None
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, json.JSONDecodeError) as err:
        raise ValueError(f"weights file {str(path)!r} is truncated or corrupt ({err}); save the model again") from err
    for key, value, kind in (("tied", tied, "a JSON object {name: name}"), ("sha256", sums, "a JSON object {name: hex}"),
                             ("config", config, "a JSON object")):
        if value is not None and not (isinstance(value, dict) and (key == "config" or all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()))):
            raise ValueError(f"weights file {str(path)!r}: metadata {key!r} must be {kind}, got {value!r:.80}")
    if sums is not None:
        if set(sums) != set(tensors):
            raise ValueError(f"weights file {str(path)!r}: the checksums name {sorted(set(sums) ^ set(tensors))[:4]}, "
                             "which do not match the tensors in the file (corrupt or edited); save the model again")
        for name, t in tensors.items():
            if _tensor_sha256(t) != sums[name]:
                raise ValueError(f"weights file {str(path)!r}: tensor {name!r} does not match its checksum "
                                 "(the file is corrupt: a changed bit or byte); save the model again")
    for name, source in tied.items():
        if source not in tensors:
            raise ValueError(f"weights file {str(path)!r}: {name} is tied to {source}, which the file lacks")
        tensors[name] = tensors[source]
    return tensors, tied, config


def _untie_as_saved(model: torch.nn.Module, tied: dict[str, str]) -> None:
    """Give each parameter the model shares under several names, but the file stores separately, its own
    tensor (e.g. an ``lm_head`` changed by a merged LoRA adapter, no longer equal to the embedding)."""
    first: dict[int, str] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) not in first:
            first[id(p)] = name
        elif tied.get(name) != first[id(p)]:
            owner, _, attr = name.rpartition(".")
            setattr(model.get_submodule(owner), attr, torch.nn.Parameter(p.detach().clone(), p.requires_grad))


def _checkpoint_dir(directory: str | Path) -> Path:
    """``directory`` as a Path after finishing an interrupted save; a clear error when it is a file."""
    directory = Path(directory)
    if directory.is_file():
        hint = (f"; pass the folder {str(directory.parent)!r}" if directory.name in _OURS
                else "; pass the folder that holds model.safetensors and config.json")
        raise FileNotFoundError(f"checkpoint directory {str(directory)!r} is a file, not a checkpoint folder{hint}")
    _recover(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint directory {str(directory)!r} does not exist")
    return directory


def load_checkpoint(directory: str | Path, device: str | torch.device | None = None
                    ) -> tuple[GPT, BPETokenizer | None, dict]:
    """Load ``(model, tokenizer or None, extra)`` from a checkpoint directory; the model is in eval mode.

    Every problem names the file and what is wrong with it: missing, truncated, corrupt (a tensor that
    fails its checksum), a config that differs from the one saved with the weights, or weights whose
    shapes do not fit the config. A save that was interrupted is finished first (see the module docstring).
    """
    directory = _checkpoint_dir(directory)
    config = _read_config(directory)
    tensors, tied, saved_config = _read_tensors(directory / MODEL_FILE)
    weights = str(directory / MODEL_FILE)
    if saved_config is not None and saved_config != config.to_dict():
        changed = sorted(k for k in set(saved_config) | set(config.to_dict())
                         if saved_config.get(k) != config.to_dict().get(k))
        diffs = ", ".join(f"{k}={config.to_dict().get(k)!r} in {CONFIG_FILE} but {saved_config.get(k)!r} in the "
                          f"weights" for k in changed[:3])
        raise ValueError(f"{CONFIG_FILE} in {str(directory)!r} differs from the config saved with {weights!r}: "
                         f"{diffs} (was {CONFIG_FILE} edited?)")
    model = GPT(config)
    _untie_as_saved(model, tied)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ValueError(f"weights file {weights!r} does not match {CONFIG_FILE}: missing {missing[:4]}, "
                         f"unexpected {unexpected[:4]} (was the config edited, or the file from another model?)")
    for name, t in expected.items():
        if tensors[name].shape != t.shape:
            raise ValueError(f"weights file {weights!r} does not match {CONFIG_FILE}: {name} has shape "
                             f"{tuple(tensors[name].shape)} in the file but {tuple(t.shape)} from the config {config}")
    model.load_state_dict(tensors)
    model.to(pick_device(None if device is None else str(device)))
    model.eval()
    tokenizer = None
    if (directory / TOKENIZER_FILE).exists():
        tokenizer = BPETokenizer.load(directory / TOKENIZER_FILE)
        if tokenizer.vocab_size != config.vocab_size:
            raise ValueError(f"tokenizer file {str(directory / TOKENIZER_FILE)!r} has vocab_size="
                             f"{tokenizer.vocab_size} but {CONFIG_FILE} says vocab_size={config.vocab_size}")
    extra = {}
    if (directory / EXTRA_FILE).exists():
        extra = _read_json(directory / EXTRA_FILE, "extra")
        if not isinstance(extra, dict):
            raise ValueError(f"extra file {str(directory / EXTRA_FILE)!r} must hold a JSON object")
    return model, tokenizer, extra


def load_base_model(device: str | torch.device | None = None) -> tuple[GPT, BPETokenizer]:
    """The course's pretrained English base model and its tokenizer (shipped in helpers/assets/).

    Each call returns a fresh copy, so changing its weights in one notebook affects nothing else.
    """
    if not (BASE_MODEL_DIR / MODEL_FILE).is_file():
        raise FileNotFoundError(f"the base model is missing from {str(BASE_MODEL_DIR)!r}; "
                                f"rebuild it with: python -m helpers.pretrain --out {BASE_MODEL_DIR}")
    model, tokenizer, _ = load_checkpoint(BASE_MODEL_DIR, device)
    if tokenizer is None:
        raise FileNotFoundError(f"tokenizer file {str(BASE_MODEL_DIR / TOKENIZER_FILE)!r} is missing")
    return model, tokenizer


def base_model_facts() -> dict:
    """What ``python -m helpers.pretrain`` recorded about the base model: parameters, steps,
    seconds, device, validation loss and the unigram baseline (in nats per token)."""
    _, extra, _ = load_checkpoint_meta(BASE_MODEL_DIR)
    return extra


def load_checkpoint_meta(directory: str | Path) -> tuple[GPTConfig, dict, bool]:
    """``(config, extra, has_tokenizer)`` of a checkpoint, without reading its weights."""
    directory = _checkpoint_dir(directory)
    config = _read_config(directory)
    extra = _read_json(directory / EXTRA_FILE, "extra") if (directory / EXTRA_FILE).exists() else {}
    return config, extra, (directory / TOKENIZER_FILE).exists()
