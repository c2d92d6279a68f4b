"""A benchmark worker process: signing throughput or cold start for one implementation, printed as JSON.

    python -m benchmarks.worker ENV_DIR throughput IMPL KEY MECH THREADS SECONDS [--wait]
    python -m benchmarks.worker ENV_DIR coldstart IMPL

With --wait the worker prints "ready" once its sessions are open and starts on a line from stdin, so
several workers on one store can be started together. Figures that need a fresh process (threads on a
module initialised without locking flags, start-up time, memory growth) are measured here.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any


def rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4


def _env(directory: str) -> dict[str, Any]:
    from pathlib import Path

    data: dict[str, Any] = json.loads((Path(directory) / "env.json").read_text())
    os.environ.update(SOFTHSM2_CONF=data["softhsm_conf"], VSC_HOME=data["vsc_home"])
    return data


def signers(data: dict[str, Any], impl: str, kind: str, mech: str, count: int) -> list[Callable[[], bytes]]:
    """COUNT independent sign functions (own session each for modules)."""
    from benchmarks import cases

    case = cases.SIGN_CASES[(kind, mech)]
    if impl == "raw":
        from pathlib import Path

        from cryptography.hazmat.primitives import serialization

        key = serialization.load_pem_private_key((Path(data["keys_dir"]) / f"{kind}.pem").read_bytes(), None)
        return [lambda: case.raw(key) for _ in range(count)]
    import pkcs11

    lib = pkcs11.lib(data[f"{impl}_module"])
    token = lib.get_token(token_label=data["label"])
    first = token.open(user_pin=data["pin"])
    sessions = [first] + [token.open() for _ in range(count - 1)]
    keys = [s.get_key(object_class=pkcs11.ObjectClass.PRIVATE_KEY, label=kind) for s in sessions]
    return [lambda k=k: case.pkcs11(k) for k in keys]


def throughput(
    data: dict[str, Any], impl: str, kind: str, mech: str, threads: int, seconds: float, wait: bool
) -> dict[str, Any]:
    fns = signers(data, impl, kind, mech, threads)
    for fn in fns:
        fn()
    if wait:
        print("ready", flush=True)
        sys.stdin.readline()
    counts = [0] * threads
    errors: list[str] = []
    deadline = time.monotonic() + seconds

    def loop(i: int) -> None:
        fn = fns[i]
        n = 0
        try:
            while time.monotonic() < deadline:
                fn()
                n += 1
        except Exception as exc:  # a thread's exception would otherwise vanish with the thread
            errors.append(f"thread {i}: {type(exc).__name__} {exc}")
        counts[i] = n

    start = time.monotonic()
    pool = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=max(0.0, deadline + 30 - time.monotonic()))
    if any(t.is_alive() for t in pool):
        # A module that deadlocks or spins under threads (SoftHSM without locking flags does) must not hold
        # the run: report it and leave without waiting for the stuck threads.
        print(f"signing hung: a thread was still inside the module 30 s after the end ({sum(counts)} done)",
              file=sys.stderr, flush=True)  # fmt: skip
        os._exit(3)
    elapsed = time.monotonic() - start
    if errors:
        raise SystemExit(f"signing failed after {sum(counts)} signatures: {'; '.join(errors)}")
    return {"ops_per_s": sum(counts) / elapsed, "ops": sum(counts), "seconds": elapsed}


def coldstart(data: dict[str, Any], impl: str) -> dict[str, Any]:
    import pkcs11

    rss_start = rss_kb()
    lib = pkcs11.lib(data[f"{impl}_module"])
    lib.get_slots()
    ready = time.monotonic_ns()
    rss_loaded = rss_kb()
    session = lib.get_token(token_label=data["label"]).open(user_pin=data["pin"])
    rss_login = rss_kb()
    session.close()
    return {"ready_ns": ready, "rss_start_kb": rss_start, "rss_loaded_kb": rss_loaded, "rss_login_kb": rss_login}


def main(argv: list[str]) -> int:
    data = _env(argv[0])
    command = argv[1]
    if command == "throughput":
        impl, kind, mech, threads, seconds = argv[2:7]
        result = throughput(data, impl, kind, mech, int(threads), float(seconds), "--wait" in argv)
    elif command == "coldstart":
        result = coldstart(data, argv[2])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
