#!/usr/bin/env bash
# The project's test command: install, lint, type-check, run every test (unit, module, real clients,
# identity server), then the benchmark suite in smoke mode (each case once, no timing asserted).
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/install.sh
.venv/bin/ruff check src tests benchmarks softhsm-config native
.venv/bin/ruff format --check src tests benchmarks softhsm-config native
.venv/bin/mypy
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
if [ -d benchmarks ] && ls benchmarks/test_*.py >/dev/null 2>&1; then
  .venv/bin/python -m pytest -q -p no:cacheprovider benchmarks --benchmark-disable
fi
