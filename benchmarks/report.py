"""Run the benchmark suite and print one table: operation, raw, SoftHSM, vsc, vsc/SoftHSM, vsc/raw, target.

    python -m benchmarks.report                      # full run (several minutes), prints the table
    python -m benchmarks.report --markdown docs/benchmarks.md   # also rewrite the table in that file
    python -m benchmarks.report --from-json run.json # only render an earlier run's --benchmark-json

Extra arguments after `--` go to pytest (e.g. `-- -k sign`). The rows come from `benchmark.extra_info`
(see benchmarks/common.py): pytest-benchmark medians for in-process cases, subprocess figures otherwise.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCALE = {"us": 1e6, "ms": 1e3}
BEGIN, END = "<!-- benchmark-table:begin -->", "<!-- benchmark-table:end -->"
Key = tuple[str, str]  # (operation, client)


def records(run: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for bench in run.get("benchmarks", []):
        info = dict(bench.get("extra_info") or {})
        if "op" not in info:
            continue
        more = info.pop("more", [])
        if "value" not in info and "failed" not in info:
            info["value"] = bench["stats"]["median"] * SCALE.get(info["unit"], 1.0)
        out.append(info)
        out.extend(more)
    return out


def collect(recs: list[dict[str, Any]]) -> tuple[dict[Key, dict[str, Any]], dict[Key, float], dict[Key, str]]:
    """Values per (op, client) and impl; raw values per (op, client), where (op, "*") is the floor for rows
    whose client measured none of its own; the unit per row."""
    table: dict[Key, dict[str, Any]] = {}
    raw: dict[Key, float] = {}
    units: dict[Key, str] = {}
    for r in recs:
        value = r.get("value")
        if r["impl"] == "raw":
            if value is not None:
                # The in-process pytest-benchmark floor (client "cryptography") serves every row without its own.
                raw[(r["op"], "*" if r["client"] == "cryptography" else r["client"])] = value
            continue
        key = (r["op"], r["client"])
        units[key] = r["unit"]
        table.setdefault(key, {})[r["impl"]] = value if value is not None else "failed"
    # Two-thread scaling rows, derived from the throughput rows.
    for client in ("python-pkcs11", "C"):
        one = table.get(("RSA-2048 SHA256_RSA_PKCS throughput (ops/s), 1 thread", client))
        two = table.get(("RSA-2048 SHA256_RSA_PKCS throughput (ops/s), 2 threads", client))
        key = ("RSA-2048 throughput, 2 threads / 1 thread (x)", client)
        if not one or not two or key in table:  # a test may give the ratio itself (see test_threads_c)
            continue
        units[key] = "x"
        row = table[key] = {}
        for impl in ("softhsm", "vsc"):
            a, b = one.get(impl), two.get(impl)
            row[impl] = b / a if isinstance(a, float) and isinstance(b, float) and a else "failed"
    r1 = raw.get(("RSA-2048 SHA256_RSA_PKCS throughput (ops/s), 1 thread", "*"))
    r2 = raw.get(("RSA-2048 SHA256_RSA_PKCS throughput (ops/s), 2 threads", "*"))
    if r1 and r2 and ("RSA-2048 throughput, 2 threads / 1 thread (x)", "*") not in raw:
        raw[("RSA-2048 throughput, 2 threads / 1 thread (x)", "*")] = r2 / r1
    return table, raw, units


Check = Callable[[float | None, float | None, float | None], bool | None]


def _ratio(limit_s: float | None, limit_r: float | None) -> Check:
    def check(vsc: float | None, soft: float | None, raw: float | None) -> bool | None:
        if vsc is None:
            return None
        ok = True
        if limit_s is not None and soft:
            ok &= vsc / soft <= limit_s
        if limit_r is not None and raw:
            ok &= vsc / raw <= limit_r
        return ok

    return check


def _absolute(limit: float, at_least: bool = False) -> Check:
    def check(vsc: float | None, soft: float | None, raw: float | None) -> bool | None:
        if vsc is None:
            return None
        return vsc >= limit if at_least else vsc <= limit

    return check


TARGETS: dict[str, tuple[str, Check]] = {
    "sign RSA-2048 SHA256_RSA_PKCS": ("<=0.5x SoftHSM, <=1.1x raw", _ratio(0.5, 1.1)),
    "sign RSA-2048 RSA_PKCS": ("<=0.5x SoftHSM, <=1.1x raw", _ratio(0.5, 1.1)),
    "sign RSA-2048 SHA256_RSA_PKCS_PSS": ("<=0.5x SoftHSM, <=1.1x raw", _ratio(0.5, 1.1)),
    "sign P-256 ECDSA": ("<=0.5x SoftHSM, <=1.3x raw", _ratio(0.5, 1.3)),
    "RSA-2048 throughput, 2 threads / 1 thread (x)": (">=1.8x", _absolute(1.8, at_least=True)),
    "C_FindObjects 1 key among 1000 objects": ("<=0.1x SoftHSM", _ratio(0.1, None)),
    "C_GetInfo": ("<=0.5 us", _absolute(0.5)),
    "C_GetTokenInfo": ("<=0.2x SoftHSM", _ratio(0.2, None)),
    "cold start: process start to first C_GetSlotList (ms)": ("<=100 ms", _absolute(100)),
    "RSS growth: load + login (MB)": ("<=32 MB", _absolute(32)),
    "C_Login (ms)": ("<=250 ms", _absolute(250)),
    "C_OpenSession+C_Login+C_Logout+C_CloseSession (ms)": ("<=250 ms", _absolute(250)),
    "push relay post -> listener, p99 (ms)": ("<=200 ms (issue 9, push on loopback)", _absolute(200)),
    "request create -> seen by the agent, p99 (ms)": ("<=200 ms (issue 9, push on loopback)", _absolute(200)),
}


# Targets stated as an absolute figure (not a ratio): a client whose own cost exceeds them cannot show
# whether the module meets them.
ABSOLUTE = frozenset(
    {
        "cold start: process start to first C_GetSlotList (ms)",
        "RSS growth: load + login (MB)",
        "C_GetInfo",
        "C_Login (ms)",
        "C_OpenSession+C_Login+C_Logout+C_CloseSession (ms)",
        "RSA-2048 throughput, 2 threads / 1 thread (x)",
    }
)


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, str):
        return v
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    if abs(v) >= 0.1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def _num(v: Any) -> float | None:
    return v if isinstance(v, float | int) else None


def table_rows(run: dict[str, Any]) -> list[list[str]]:
    table, raw, units = collect(records(run))
    rows = []
    for (op, client), values in table.items():
        soft, vsc = _num(values.get("softhsm")), _num(values.get("vsc"))
        floor = raw.get((op, client), raw.get((op, "*")))
        target = ""
        if op in TARGETS:
            text, check = TARGETS[op]
            verdict = check(vsc, soft, floor)
            target = f"{text}: {'met' if verdict else 'MISSED'}" if verdict is not None else text
            if verdict is False and op in ABSOLUTE and floor is not None and check(floor, None, None) is False:
                # Raw `cryptography`, with no token at all, misses it too in this run: the machine decides.
                target = f"{text}: machine-bound (raw reaches {_fmt(floor)} here)"
            elif verdict is False and op in ABSOLUTE and soft is not None and check(soft, None, None) is False:
                # The reference module misses it too under this client and run: the client's own cost or the
                # machine decides the row, not the module.
                target = f"{text}: SoftHSM misses it too here ({_fmt(soft)})"
        rows.append(
            [
                op,
                client,
                units[(op, client)],
                _fmt(floor) if floor is not None else "-",
                _fmt(values.get("softhsm")),
                _fmt(values.get("vsc")),
                f"{vsc / soft:.2f}" if vsc is not None and soft else "-",
                f"{vsc / floor:.2f}" if vsc is not None and floor else "-",
                target,
            ]
        )
    return rows


HEADER = ["operation", "client", "unit", "raw", "SoftHSM", "vsc", "vsc/SoftHSM", "vsc/raw", "target"]


def failures(run: dict[str, Any]) -> list[str]:
    """One line per case that ran but produced no figure, with the reason."""
    return [f"- {r['op']} ({r['client']}, {r['impl']}) failed: {r['failed']}" for r in records(run) if "failed" in r]


def markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join("---" for _ in HEADER) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def plain(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [HEADER, *rows])


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import cryptography

    soft = subprocess.run(["softhsm2-util", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    return (
        f"{os.cpu_count()} cores (nproc), {model}; {platform.system()} {platform.release()}; "
        f"CPython {platform.python_version()}, cryptography {cryptography.__version__}, SoftHSM {soft or '?'}"
    )


def header(command: str, run: dict[str, Any] | None = None) -> str:
    """When the run was made (pytest-benchmark records it; --from-json renders it later), where, and how."""
    stamp = (run or {}).get("datetime")
    when = datetime.datetime.fromisoformat(stamp) if stamp else datetime.datetime.now(datetime.UTC)
    date = when.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"Run: {date}  \nMachine: {machine()}  \nCommand: `{command}`\n"


def write_markdown(path: Path, text: str) -> None:
    block = f"{BEGIN}\n{text}\n{END}"
    if path.exists() and BEGIN in path.read_text():
        old = path.read_text()
        start, end = old.index(BEGIN), old.index(END) + len(END)
        path.write_text(old[:start] + block + old[end:])
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# Benchmarks\n\n{block}\n")


def run_suite(json_path: Path, extra: list[str]) -> None:
    argv = [sys.executable, "-m", "pytest", "benchmarks", "--benchmark-enable", f"--benchmark-json={json_path}"]
    argv += ["-q", "-p", "no:cacheprovider", "--benchmark-max-time=1.0", *extra]
    subprocess.run(argv, check=True, cwd=ROOT)


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    extra = args_in[args_in.index("--") + 1 :] if "--" in args_in else []
    own = args_in[: args_in.index("--")] if "--" in args_in else args_in
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from-json", type=Path, help="render this --benchmark-json file instead of running")
    parser.add_argument("--json", type=Path, help="keep the run's --benchmark-json here")
    parser.add_argument("--markdown", type=Path, help="rewrite the table block in this Markdown file")
    args = parser.parse_args(own)
    command = "python -m benchmarks.report " + " ".join(args_in)
    if args.from_json:
        path = args.from_json
    else:
        path = args.json or Path(tempfile.mkdtemp(prefix="vsc-bench-")) / "run.json"
        run_suite(path, extra)
    run = json.loads(path.read_text())
    rows = table_rows(run)
    notes = failures(run)
    print(header(command, run))
    print(plain(rows))
    print("\n".join(notes))
    if args.markdown:
        write_markdown(args.markdown, header(command, run) + "\n" + markdown(rows) + "\n\n" + "\n".join(notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
