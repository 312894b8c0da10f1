"""Where the course runs: device choice, seeds, fast mode and an environment summary.

Every notebook starts with ``describe()`` so that its first output says on what hardware,
with which library versions and in which mode it ran.
"""

from __future__ import annotations

import contextlib
import os
import platform
import random
from collections.abc import Iterator

import numpy as np
import torch

_TRUE = {"1", "true"}
_FALSE = {"", "0", "false"}
_DEVICE_KINDS = ("cuda", "mps", "cpu")


def _read_fast_flag() -> bool:
    raw = os.environ.get("COURSE_FAST", "")
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"COURSE_FAST must be unset, 0, 1, true or false, got {raw!r}")


#: True when the course runs in fast mode (``COURSE_FAST=1``): smaller models, fewer steps.
FAST: bool = _read_fast_flag()


def scaled(full: int | float, fast: int | float) -> int | float:
    """Return ``fast`` in fast mode and ``full`` otherwise, so sizes stay visible in the notebook."""
    return fast if FAST else full


def available_devices() -> list[str]:
    """The device kinds this machine can run on, best first (always ends with ``"cpu"``)."""
    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    found.append("cpu")
    return found


def pick_device(preferred: str | None = None) -> torch.device:
    """Choose where tensors live: ``preferred``, else ``$COURSE_DEVICE``, else CUDA, MPS, CPU.

    Asking for a device that this machine lacks raises a ``ValueError`` that lists what exists.
    """
    source = "device"
    if preferred is None:
        env = os.environ.get("COURSE_DEVICE", "").strip()
        if env:
            preferred, source = env, "COURSE_DEVICE"
    have = available_devices()
    if preferred is None:
        return torch.device(have[0])
    if not isinstance(preferred, (str, torch.device)):  # torch.device(5) would mean cuda:5
        raise ValueError(f"{source} must be a device name such as {', '.join(repr(h) for h in have)}, "
                         f"got {preferred!r}")
    try:
        device = torch.device(preferred)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"{source} must be one of {', '.join(have)} (optionally with an index such as cuda:0), "
            f"got {preferred!r}"
        ) from err
    if device.type not in have:
        raise ValueError(f"{source}={preferred!r} is not available here; this machine has: {', '.join(have)}")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(
            f"{source}={preferred!r} is not available here; this machine has "
            f"{torch.cuda.device_count()} CUDA device(s)"
        )
    return device


MAX_SEED = 2**63 - 1  # the largest seed every generator takes (and seed + 1 still fits PyTorch's range)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (all devices); returns a CPU generator seeded the same way."""
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be an int in 0..{MAX_SEED} (2**63 - 1), got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def autocast(device: torch.device | str, enabled: bool = True) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (where it speeds up matrix work); a no-op context elsewhere."""
    device = torch.device(device)
    if enabled and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def synchronize(device: torch.device | str) -> None:
    """Wait for queued GPU work, so that timings measure the work and not its launch."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def versions() -> dict[str, str]:
    """Versions of Python and of the libraries the course relies on."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("torch", "numpy", "matplotlib", "ipywidgets", "optuna", "safetensors", "tqdm"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "missing"
    return out


def describe(device: torch.device | str | None = None) -> torch.device:
    """Print device, versions and mode (the first output of every notebook); return the device."""
    device = pick_device() if device is None else torch.device(device)
    name = device.type
    if device.type == "cuda":
        name += f" ({torch.cuda.get_device_name(device)})"
    print(f"device: {name}   threads: {torch.get_num_threads()}   mode: {'FAST' if FAST else 'full'}")
    print("   ".join(f"{k} {v}" for k, v in versions().items()))
    return device


@contextlib.contextmanager
def num_threads(n: int) -> Iterator[None]:
    """Temporarily run PyTorch CPU kernels on ``n`` threads."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@contextlib.contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Inside the block ``model`` is in eval mode (dropout off); afterwards it is back in the mode it
    had, also when the block raises."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
