"""A new project outside the repository: the wheel with ``[testing]`` runs the README's test.

Builds seawall's wheel, installs ``seawall[testing]`` from it into a fresh virtual
environment (its dependencies from the package index pip is set up with), copies
the quickstart's service and test (the README's, see ``tests/docs/test_readme.py``)
into an empty directory and runs a plain ``pytest`` there: no configuration, no
``PYTHONPATH``, nothing of the repository's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart"
LEAKY = ("PYTHONPATH", "PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def _run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _wheel(out: Path) -> Path:
    _run(sys.executable, "-m", "pip", "wheel", ROOT, "--no-deps", "-q", "-w", out, cwd=out)
    [wheel] = out.glob("seawall-*.whl")
    return wheel


def _fresh_env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in LEAKY and k != "VIRTUAL_ENV"}
    return {**env, "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"}


def test_the_readme_test_passes_with_plain_pytest_in_a_new_project(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path)
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    requirement = f"seawall[testing] @ {wheel.as_uri()}"
    _run(
        sys.executable, "-m", "pip", "--python", python, "install", "-q", requirement, cwd=tmp_path
    )
    project = tmp_path / "project"
    project.mkdir()
    for name in ("shop.py", "test_shop.py"):
        shutil.copy(QUICKSTART / name, project / name)
    env = _fresh_env(venv)

    where = _run(python, "-c", "import seawall; print(seawall.__file__)", cwd=project, env=env)
    assert where.startswith(str(venv))  # the wheel's seawall, not the repository's
    out = _run(venv / "bin" / "pytest", cwd=project, env=env)
    assert "1 passed" in out
    assert "warning" not in out.lower()
