"""C_FindObjects among 1, 100 and 1,000 token objects; C_OpenSession/C_CloseSession; C_Login/C_Logout."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.common import MODULES, Env, describe


@pytest.mark.parametrize("impl", MODULES)
@pytest.mark.parametrize("count", [1, 100, 1000])
def test_find_objects(benchmark: Any, count: int, impl: str, bench_env: Env, libs: dict[str, Any]) -> None:
    import pkcs11

    session = libs[impl].get_token(token_label=bench_env.find_token(count)).open()
    template = {pkcs11.Attribute.CLASS: pkcs11.ObjectClass.PUBLIC_KEY, pkcs11.Attribute.LABEL: "p256"}

    def find() -> int:
        return len(list(session.get_objects(template)))

    try:
        describe(benchmark, f"C_FindObjects 1 key among {count} objects", "python-pkcs11", impl)
        assert benchmark(find) == 1
    finally:
        session.close()


@pytest.mark.parametrize("impl", MODULES)
def test_open_close_session(benchmark: Any, impl: str, bench_env: Env, libs: dict[str, Any]) -> None:
    token = libs[impl].get_token(token_label=bench_env.find_token(1))
    describe(benchmark, "C_OpenSession+C_CloseSession", "python-pkcs11", impl)
    benchmark(lambda: token.open().close())


@pytest.mark.parametrize("impl", MODULES)
def test_login_logout(benchmark: Any, impl: str, bench_env: Env, libs: dict[str, Any]) -> None:
    token = libs[impl].get_token(token_label=bench_env.find_token(1))
    rounds = 1 if getattr(benchmark, "disabled", False) else 5
    describe(benchmark, "C_OpenSession+C_Login+C_Logout+C_CloseSession (ms)", "python-pkcs11", impl, unit="ms")
    benchmark.pedantic(lambda: token.open(user_pin=bench_env.pin).close(), rounds=rounds)


@pytest.mark.parametrize("impl", MODULES)
def test_get_token_info(benchmark: Any, impl: str, bench_env: Env, libs: dict[str, Any]) -> None:
    slot = libs[impl].get_token(token_label=bench_env.label).slot
    describe(benchmark, "C_GetTokenInfo", "python-pkcs11", impl)
    benchmark(slot.get_token)
