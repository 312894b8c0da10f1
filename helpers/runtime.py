"""Where the course runs: device choice, seeds, fast mode and an environment summary.

Every notebook starts with ``describe()`` so that its first output says on what hardware,
with which library versions and in which mode it ran.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import random
import re
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

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


#: The course's goals for one notebook (issue "workshop-ready notebooks"): full mode on 2 threads of a
#: 2-core laptop CPU, its peak memory (kernel and the processes it starts), and fast mode (COURSE_FAST=1).
MAX_FULL_MINUTES = 5.0
MAX_FULL_GB = 2.0
MAX_FAST_SECONDS = 30.0
#: Where the full-mode run (``python -m helpers.budgets full``) writes what it measured, per notebook.
VERIFIED_FILE = Path(__file__).resolve().parents[1] / "notebooks" / "verified.json"
#: The libraries whose major version ``describe`` compares with the verified set (Python: 3.x counts as major).
COMPARED = ("python", "torch", "numpy")


@dataclass(frozen=True)
class Budget:
    """What one notebook may cost, declared in its first code cell and checked by ``helpers.budgets``.

    ``full_minutes``: wall-clock minutes in full mode on 2 threads of a 2-core laptop CPU;
    ``full_gb``: peak resident memory of the kernel (and the processes it starts) in full mode, in GB (1e9 bytes);
    ``fast_seconds``: seconds in fast mode on one thread (checked as CPU time by the test run).
    """

    full_minutes: float
    full_gb: float
    fast_seconds: float

    def __post_init__(self) -> None:
        for name, top in (("full_minutes", MAX_FULL_MINUTES), ("full_gb", MAX_FULL_GB),
                          ("fast_seconds", MAX_FAST_SECONDS)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"Budget {name} must be a number, got {value!r}")
            if not (math.isfinite(value) and 0 < value <= top):
                raise ValueError(f"Budget {name} must be in (0, {top:g}] (the course's limit), got {value!r}")

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    def __str__(self) -> str:
        return (f"full mode <= {self.full_minutes:g} min and <= {self.full_gb:g} GB (2 threads), "
                f"fast mode <= {self.fast_seconds:g} s")


def _major(name: str, version: str) -> tuple[int, ...] | None:
    """The part of a version that counts as major: (3, 12) for Python 3.12.3, (2,) for torch 2.13.0.

    Python's own major version has been 3 for years, so its minor version is the one that breaks things.
    None when the version does not start with digits (``"missing"``).
    """
    parts = []
    for piece in version.split(".")[: 2 if name == "python" else 1]:
        digits = re.match(r"\d+", piece)
        if digits is None:
            return None
        parts.append(int(digits.group()))
    return tuple(parts)


def major_differences(mine: dict[str, str], verified: dict[str, str]) -> list[str]:
    """``"torch 3.0.1 here, 2.13.0 verified"`` for each of ``COMPARED`` whose major version differs."""
    out = []
    for name in COMPARED:
        a, b = mine.get(name), verified.get(name)
        if a is None or b is None:
            continue
        if _major(name, a) != _major(name, b):
            out.append(f"{name} {a} here, {b} verified")
    return out


def verified_entry(notebook: str, path: Path | str | None = None) -> dict | None:
    """The full-mode record of ``notebook`` (its number "08" or name) in ``notebooks/verified.json``, or None
    when the file is missing, unreadable, or has no record of that notebook."""
    path = Path(VERIFIED_FILE if path is None else path)
    try:
        records = json.loads(path.read_text(encoding="utf-8")).get("notebooks", {})
    except (OSError, ValueError, AttributeError):
        return None
    for name, record in sorted(records.items()):
        if name == notebook or name.split("_")[0] == notebook:
            full = record.get("full") if isinstance(record, dict) else None
            return full if isinstance(full, dict) else None
    return None


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max" (cgroup v2 without a limit) -> None


def available_memory(cgroup: Path | str = "/sys/fs/cgroup", meminfo: Path | str = "/proc/meminfo"
                     ) -> tuple[int | None, str]:
    """Bytes this process can still allocate, and where the figure comes from.

    A cgroup limit (JupyterHub and containers set one: v2 ``memory.max``, v1 ``memory.limit_in_bytes``) minus
    the group's usage, else the kernel's ``MemAvailable``, else psutil (macOS, Windows); the smaller of a
    cgroup's room and ``MemAvailable`` when both exist. ``(None, "unknown")`` when nothing can be read.
    """
    cgroup, found = Path(cgroup), []
    for limit_file, usage_file in (("memory.max", "memory.current"),
                                   ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        limit = _read_int(cgroup / limit_file)
        if limit is not None and limit < 2**60:  # v1 writes a huge number for "no limit"
            used = _read_int(cgroup / usage_file) or 0
            found.append((max(limit - used, 0), f"cgroup limit {limit / 1e9:.1f} GB"))
            break
    try:
        for line in Path(meminfo).read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append((int(line.split()[1]) * 1024, "MemAvailable"))
                break
    except (OSError, ValueError, IndexError):
        pass
    if not found:
        try:
            import psutil  # a dependency of the Jupyter kernel, present wherever a notebook runs

            found.append((int(psutil.virtual_memory().available), "available memory"))
        except Exception:  # noqa: BLE001 - no figure is better than a crash in the first cell
            return None, "unknown"
    return min(found)


def _own_rss() -> int:
    """This process's resident memory in bytes (0 when it cannot be read)."""
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:  # noqa: BLE001
        return 0


def memory_warning(budget: Budget, fast: bool | None = None, available: tuple[int | None, str] | None = None,
                   own_rss: int | None = None) -> str | None:
    """A warning when the notebook's declared full-mode peak does not fit into the free memory, else None.

    In fast mode, or when the free memory is unknown, there is nothing to say. ``available`` and ``own_rss``
    are for tests; by default they are measured (``available_memory()``, this process's RSS, which the
    declared peak already includes).
    """
    if not isinstance(budget, Budget):
        raise TypeError(f"budget must be a Budget, got {type(budget).__name__}")
    if FAST if fast is None else fast:
        return None
    free, source = available_memory() if available is None else available
    if free is None:
        return None
    need = budget.full_gb * 1e9 - (_own_rss() if own_rss is None else own_rss)
    if need <= free:
        return None
    return (f"WARNING memory: full mode needs up to {budget.full_gb:g} GB, but only {free / 1e9:.1f} GB are free "
            f"here ({source}); it may be stopped half-way. Use fast mode: put `import os; "
            f"os.environ['COURSE_FAST'] = '1'` first in this cell and restart the kernel, or start Jupyter "
            f"with COURSE_FAST=1 set.")


def describe(device: torch.device | str | None = None, *, notebook: str | None = None,
             budget: Budget | None = None, verified_file: Path | str | None = None) -> torch.device:
    """Print device, versions and mode (the first output of every notebook); return the device.

    With ``notebook`` (its number, e.g. ``"08"``) and ``budget`` it also prints the declared budget, what the
    last full-mode run measured and on which versions (``notebooks/verified.json``), warns in one line when
    Python, torch or NumPy differ from those by a major version, and warns before any heavy cell when the
    full-mode peak would not fit into the free memory.
    """
    if budget is not None and not isinstance(budget, Budget):
        raise TypeError(f"budget must be a Budget, got {type(budget).__name__}")
    device = pick_device() if device is None else torch.device(device)
    name = device.type
    if device.type == "cuda":
        name += f" ({torch.cuda.get_device_name(device)})"
    mine = versions()
    print(f"device: {name}   threads: {torch.get_num_threads()}   mode: {'FAST' if FAST else 'full'}")
    print("here:     " + "   ".join(f"{k} {v}" for k, v in mine.items()))
    if notebook is not None:
        record = verified_entry(notebook, verified_file)
        if record is None:
            print("verified: not verified yet (no full-mode record in notebooks/verified.json)")
        else:
            theirs = record.get("versions", {})
            machine = record.get("machine", {})
            print("verified: " + "   ".join(f"{k} {v}" for k, v in theirs.items()))
            print(f"          on {machine.get('device', '?')} ({machine.get('cpu', '?')}, "
                  f"{machine.get('threads', '?')} threads), {record.get('date', '?')}: "
                  f"{record.get('wall_s', 0) / 60:.1f} min, {record.get('cpu_s', 0) / 60:.1f} min of CPU, "
                  f"peak {record.get('peak_mb', 0) / 1000:.2f} GB")
            differ = major_differences(mine, theirs)
            if differ:
                print("WARNING versions: " + "; ".join(differ) + " (a major version apart: results may differ)")
    if budget is not None:
        print(f"budget:   {budget}")
        warning = memory_warning(budget)
        if warning:
            print(warning)
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


def release_memory() -> None:
    """Collect garbage and hand the memory freed since back to the operating system where the C library
    can (glibc's ``malloc_trim`` on Linux): tensors freed by earlier cells otherwise stay in the process's
    heap, and a notebook's peak is counted on what the process holds, not on what it uses."""
    import gc

    gc.collect()
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # another C library (musl): nothing to trim with
            pass


@contextlib.contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Inside the block ``model`` is in eval mode (dropout off); afterwards each of its modules is back in
    the mode it had, also when the block raises. A model already in eval mode throughout is left alone:
    switching walks every module twice, which generation would pay on every call."""
    modules = [m for _, m in model.named_modules()]
    modes = [m.training for m in modules]
    if any(modes):
        model.eval()
    try:
        yield model
    finally:
        if any(modes):
            for m, mode in zip(modules, modes):
                m.training = mode
