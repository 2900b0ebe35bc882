"""The wheel holds the whole source tree: every module, the YAML presets and the kernels' sources.

An editable install imports straight from the checkout, so a package that the build leaves out
goes unnoticed until someone installs the wheel. This test builds the wheel from a copy of the
working tree (uncommitted files included), checks its file list against the source roots,
installs it into a temporary directory and imports every module from there in a fresh
interpreter whose path holds that directory and the environment's site-packages only (``-S``: no
``.pth`` files, so the editable install's finder is not loaded).
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Import name -> source directory; setup.py's PACKAGE_DIRS must agree.
ROOTS = {"sscl": "sscl", "sscl.data": "data", "sscl.kernels": "kernels"}
#: Top-level directories that are not part of the package.
NOT_PACKAGED = {"tests", "bench", "build", "docs", "scripts"}
#: Non-Python files the package needs: (source directory, glob), relative to the repository.
PACKAGE_DATA = [("sscl/configs", "*.yaml"), ("kernels/csrc", "*")]


def _source_modules() -> dict[str, str]:
    """Module name -> path inside the wheel, for every .py file under the roots."""
    found = {}
    for name, directory in ROOTS.items():
        root = REPO / directory
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(root)
            if "__pycache__" in rel.parts:
                continue
            parts = list(rel.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            module = ".".join([name, *parts])
            found[module] = "/".join([*name.split("."), *rel.parts])
    return found


def _package_data() -> list[str]:
    """Wheel paths of the package data files present in the source tree."""
    out = []
    for directory, pattern in PACKAGE_DATA:
        src = REPO / directory
        name = next(n for n, d in ROOTS.items() if directory.split("/")[0] == d)
        inner = directory.split("/", 1)[1]
        for path in sorted(src.glob(pattern)) if src.is_dir() else []:
            if path.is_file():
                out.append("/".join([*name.split("."), inner, path.name]))
    return out


def _run(cmd: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_every_top_level_python_directory_is_a_root():
    stray = sorted(
        d.name
        for d in REPO.iterdir()
        if d.is_dir() and not d.name.startswith(".") and d.name not in NOT_PACKAGED
        and d.name not in ROOTS.values() and any(d.glob("*.py"))
    )
    assert not stray, (
        f"top-level directories {stray} hold Python modules but are not mapped into the sscl "
        "package: add them to PACKAGE_DIRS in setup.py and ROOTS here, or to NOT_PACKAGED"
    )


@pytest.mark.slow
def test_wheel_holds_and_imports_every_module(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.so", "*.egg-info")
    for directory in ROOTS.values():
        shutil.copytree(REPO / directory, src / directory, ignore=ignore)
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE"):
        if (REPO / name).exists():
            shutil.copy2(REPO / name, src / name)
    pip = [sys.executable, "-m", "pip"]
    _run([*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
          "-w", str(tmp_path / "dist"), str(src)], tmp_path)
    (wheel,) = (tmp_path / "dist").glob("sscl-*.whl")

    names = set(zipfile.ZipFile(wheel).namelist())
    modules = _source_modules()
    missing = sorted(p for p in [*modules.values(), *_package_data()] if p not in names)
    assert not missing, (
        f"the wheel lacks {missing}: a directory of modules without __init__.py is not found "
        "by setup.py (add one), package data needs a pattern in pyproject.toml"
    )

    target = tmp_path / "site"
    _run([*pip, "install", "-q", "--no-deps", "--no-index", "--target", str(target),
          str(wheel)], tmp_path)
    # The environment's dependencies (torch, numba, ...): site-packages, and the user site
    # where the running interpreter uses it.
    deps = site.getsitepackages() + ([site.getusersitepackages()] if site.ENABLE_USER_SITE else [])
    script = f"""
import importlib, json, sys
sys.path[:0] = [{str(target)!r}]
sys.path += {deps!r}
failed = {{}}
for name in {sorted(modules)!r}:
    try:
        module = importlib.import_module(name)
        if not module.__file__.startswith({str(target)!r}):
            failed[name] = "imported from " + module.__file__
    except Exception as e:
        failed[name] = type(e).__name__ + ": " + str(e)
print(json.dumps(failed))
"""
    proc = _run([sys.executable, "-S", "-c", script], tmp_path)
    failed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not failed, f"modules that do not import from the installed wheel: {failed}"
