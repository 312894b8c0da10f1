"""Saving and loading a model, its config and its tokenizer: safetensors + JSON, never pickle.

A checkpoint is a directory:

    model.safetensors   the weights (tied weights stored once)
    config.json         the GPTConfig that gives those weights their shapes
    tokenizer.json      the tokenizer (optional)
    extra.json          anything JSON the caller wants to keep (optional): steps, losses, ...

Pickle files can run code when loaded; safetensors files only hold numbers, so a checkpoint from
anywhere is safe to open. The whole directory is written next to its final place and then
renamed, so an interrupted save never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
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


def _write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def save_checkpoint(directory: str | Path, model: LanguageModel, tokenizer: BPETokenizer | None = None,
                    extra: dict | None = None) -> Path:
    """Write ``model`` (+ ``tokenizer`` and JSON-able ``extra``) to ``directory``, atomically.

    An existing checkpoint in ``directory`` is replaced; a directory holding other files is
    refused rather than deleted.
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
    if directory.exists():
        if not directory.is_dir():
            raise ValueError(f"directory {str(directory)!r} exists and is a file, not a directory")
        others = sorted(p.name for p in directory.iterdir() if p.name not in _OURS)
        if others:
            raise ValueError(f"directory {str(directory)!r} holds files that are not part of a checkpoint "
                             f"({', '.join(others[:5])}); choose an empty or new directory")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        tensors, tied = _tensors_to_save(model)
        save_file(tensors, tmp / MODEL_FILE, metadata={"format": FORMAT, "tied": json.dumps(tied)})
        _write_json(tmp / CONFIG_FILE, {"format": FORMAT, "version": 1, "config": model.config.to_dict()})
        if tokenizer is not None:
            tokenizer.save(tmp / TOKENIZER_FILE)
        if extra is not None:
            _write_json(tmp / EXTRA_FILE, extra)
        os.chmod(tmp, 0o755)  # mkdtemp makes a private directory; a checkpoint is meant to be shared
        for f in tmp.iterdir():
            os.chmod(f, 0o644)
        # Swap directories: the old checkpoint (if any) stays complete until the new one is in place.
        old = None
        if directory.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old-", dir=directory.parent))
            os.replace(directory, old / "ckpt")
        os.replace(tmp, directory)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
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


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} is missing")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            tied = json.loads((f.metadata() or {}).get("tied", "{}"))
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, json.JSONDecodeError) as err:
        raise ValueError(f"weights file {str(path)!r} is truncated or corrupt ({err}); save the model again") from err
    for name, source in tied.items():
        if source not in tensors:
            raise ValueError(f"weights file {str(path)!r}: {name} is tied to {source}, which the file lacks")
        tensors[name] = tensors[source]
    return tensors


def load_checkpoint(directory: str | Path, device: str | torch.device | None = None
                    ) -> tuple[GPT, BPETokenizer | None, dict]:
    """Load ``(model, tokenizer or None, extra)`` from a checkpoint directory; the model is in eval mode.

    Every problem names the file and what is wrong with it: missing, truncated, or weights whose
    shapes do not fit the config.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint directory {str(directory)!r} does not exist")
    config = _read_config(directory)
    tensors = _read_tensors(directory / MODEL_FILE)
    model = GPT(config)
    expected = model.state_dict()
    weights = str(directory / MODEL_FILE)
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
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint directory {str(directory)!r} does not exist")
    config = _read_config(directory)
    extra = _read_json(directory / EXTRA_FILE, "extra") if (directory / EXTRA_FILE).exists() else {}
    return config, extra, (directory / TOKENIZER_FILE).exists()
