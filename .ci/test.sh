#!/usr/bin/env bash
# The project's test command: install, lint, type-check, run every test (unit, module, real clients,
# identity server), then the benchmark suite in smoke mode (each case once, no timing asserted).
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/install.sh
# The PC/SC tests run a pcscd of their own (with vsmartcard's virtual reader); a system pcscd started by
# systemd would hold its socket. `systemctl start pcscd.socket` brings it back afterwards.
if command -v systemctl >/dev/null 2>&1; then
  for unit in pcscd.socket pcscd.service; do
    if systemctl is-active --quiet "$unit" 2>/dev/null; then
      echo "stopping $unit for the PC/SC tests"
      systemctl stop "$unit"
    fi
  done
fi
.venv/bin/ruff check src tests benchmarks softhsm-config native
.venv/bin/ruff format --check src tests benchmarks softhsm-config native
.venv/bin/mypy
# Every test, on several workers (pytest-xdist): most of the suite waits on real processes (servers,
# clients, Firefox), so twice as many workers as cores keeps both cores busy. Each test file runs whole on one
# worker (its module fixtures are made once); tests that need a system-wide resource (pcscd's socket,
# Firefox's policies file) take turns for it (tests/exclusive.py). VSC_TEST_WORKERS=0 runs all in this process.
workers=${VSC_TEST_WORKERS:-$(( $(nproc) * 2 ))}
.venv/bin/python -m pytest -q -p no:cacheprovider -n "$workers" --dist loadfile "$@"
if [ -d benchmarks ] && ls benchmarks/test_*.py >/dev/null 2>&1; then
  .venv/bin/python -m pytest -q -p no:cacheprovider benchmarks --benchmark-disable
fi
