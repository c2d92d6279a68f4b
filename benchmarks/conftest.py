"""Fixtures: one prepared SoftHSM token + vsc card, both modules loaded through python-pkcs11, the C driver.

python-pkcs11 keeps one loaded library per path, so SoftHSM and vsc live side by side in this process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from benchmarks.common import MODULES, Env, build_driver, prepare_env


@pytest.fixture(scope="session")
def bench_env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    env = prepare_env(tmp_path_factory.mktemp("bench"))
    os.environ.update(env.environ())
    return env


@pytest.fixture(scope="session")
def libs(bench_env: Env) -> dict[str, Any]:
    import pkcs11

    return {impl: pkcs11.lib(bench_env.module(impl)) for impl in MODULES}


@pytest.fixture(scope="session")
def sessions(bench_env: Env, libs: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A logged-in session per module on the main token, kept open for the whole run."""
    opened = {
        impl: lib.get_token(token_label=bench_env.label).open(rw=True, user_pin=bench_env.pin)
        for impl, lib in libs.items()
    }
    yield opened
    for session in opened.values():
        session.close()


@pytest.fixture(scope="session")
def raw_keys(bench_env: Env) -> dict[str, Any]:
    """The SoftHSM token's private keys as `cryptography` objects: the floor."""
    return {
        kind: serialization.load_pem_private_key(bench_env.private_key_pem(kind), None)
        for kind in bench_env.data["keys"]
    }


@pytest.fixture(scope="session")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_driver(tmp_path_factory.mktemp("driver"))


def pytest_configure(config: pytest.Config) -> None:
    # A case skipped because a module lacks a mechanism never touches the benchmark fixture.
    config.addinivalue_line("filterwarnings", "ignore:Benchmark fixture was not used")
