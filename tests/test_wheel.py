"""The package as a user gets it: the built wheel in a fresh virtualenv outside the checkout.

The sdist and the wheel carry the LICENSE and the metadata (license, classifiers, extras).
``python -m pip install`` the wheel, then each tool's ``--help`` and the tutorial's first
program against a real etcd 3.5; then the ``testing`` extra and the docs' example test
module run by pytest with no ``-p`` (the ``pytest11`` entry point) in a fresh directory.
Needs the package index (the wheel's dependencies are installed from it), as CI has.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest
from test_docs import ROOT, example_test_module, programs

from trio_etcd_tree.testing.pytest_plugin import Servers

pytestmark = pytest.mark.wheel


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without anything that would import from the checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(extra)
    return env


def test_the_wheel_installs_and_runs(tmp_path: Path, etcd_servers: Servers) -> None:
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", dist, ROOT, cwd=tmp_path)
    (wheel,) = dist.glob("trio_etcd_tree-*.whl")
    (sdist,) = dist.glob("trio_etcd_tree-*.tar.gz")
    with tarfile.open(sdist) as tar:
        assert any(name.endswith("/LICENSE") for name in tar.getnames())
    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
        assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        text = whl.read(metadata).decode()
    assert "License-Expression: MIT" in text
    assert "Classifier: Programming Language :: Python :: 3.11" in text
    assert "Provides-Extra: testing" in text and "Provides-Extra: test\n" not in text

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", "-q", wheel, cwd=tmp_path, env=clean_env())
    where = run(
        python,
        "-c",
        "import trio_etcd_tree; print(trio_etcd_tree.__file__)",
        cwd=tmp_path,
        env=clean_env(),
    )
    assert where.startswith(str(venv)), where

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert len(scripts) >= 5
    for name in scripts:
        assert "usage:" in run(venv / "bin" / name, "--help", cwd=tmp_path, env=clean_env())

    endpoints = ",".join(etcd_servers.get("3.5").endpoints)
    where_first, first = programs(ROOT / "TUTORIAL.rst")[0]
    (tmp_path / "first.py").write_text(first)
    printed = run(
        python,
        "first.py",
        cwd=tmp_path,
        env=clean_env(ETCDCTL_ENDPOINTS=endpoints),
    )
    assert printed.strip(), f"{where_first} printed nothing"

    # the testing extra brings pytest and pytest-trio; the plugin needs no -p
    run(python, "-m", "pip", "install", "-q", f"{wheel}[testing]", cwd=tmp_path, env=clean_env())
    project = tmp_path / "user-project"
    project.mkdir()
    (project / "pyproject.toml").write_text("[tool.pytest.ini_options]\ntrio_mode = true\n")
    (project / "test_example.py").write_text(example_test_module())
    out = run(
        python,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--etcd-versions=3.5",
        cwd=project,
        env=clean_env(TRIO_ETCD_TREE_REQUIRE_ETCD="1"),
    )
    assert "3 passed" in out, out
