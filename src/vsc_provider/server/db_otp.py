"""The SQL of OATH seeds (part of the server's Database): stored sealed with the device at activation, read
back for a replayed activation, and verified under the device row's lock, so concurrent verifications of one
seed (in one process or several) queue and each sees what the one before stored."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from vsc_provider.server.db_backend import Backend, Tx

T = TypeVar("T")

SEED_FIELD = "otp_seed"  # the name the seed is sealed under (bound to its device)

_COLUMNS = (
    "device, kind, algorithm, digits, period, issuer, seed, steps, resync, counter, last_step, resync_at,"
    " failures, blocked_until"
)
# the columns a verification may change
STATE = ("counter", "last_step", "resync_at", "failures", "blocked_until")


@dataclass
class OtpSeed:
    """A device's OATH seed and what the server verifies with: the card computes kind/algorithm/digits/period;
    steps is the TOTP window either side (HOTP: the look-ahead), resync the HOTP resynchronisation range;
    counter is the next HOTP counter expected, last_step the last TOTP step accepted, resync_at the HOTP
    counter a first code of a resynchronisation matched (the next code must match the one after it)."""

    device: str
    kind: str
    algorithm: str
    digits: int
    period: int
    issuer: str
    seed: bytes
    steps: int
    resync: int
    counter: int = 0
    last_step: int = -1
    resync_at: int | None = None
    failures: int = 0
    blocked_until: float = 0.0


class OtpTables:
    _b: Backend
    _seal: Callable[[str, str, bytes | None], bytes | None]
    _unseal: Callable[[str, str, bytes | None], bytes | None]

    def _otp_row(self, seed: OtpSeed) -> tuple[Any, ...]:
        """The insert's values, the seed sealed (outside the transaction, as the device's secrets are)."""
        sealed = self._seal(seed.device, SEED_FIELD, seed.seed)
        return (
            seed.device,
            seed.kind,
            seed.algorithm,
            seed.digits,
            seed.period,
            seed.issuer,
            sealed,
            seed.steps,
            seed.resync,
            time.time(),
        )

    @staticmethod
    def _insert_otp(tx: Tx, row: tuple[Any, ...]) -> None:
        tx.execute(
            "INSERT INTO otp_seeds(device, kind, algorithm, digits, period, issuer, seed, steps, resync, created)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            row,
        )

    def _otp_from(self, row: Any) -> OtpSeed:
        seed = self._unseal(row[0], SEED_FIELD, row[6])
        assert seed is not None
        return OtpSeed(
            str(row[0]),
            str(row[1]),
            str(row[2]),
            int(row[3]),
            int(row[4]),
            str(row[5]),
            seed,
            int(row[7]),
            int(row[8]),
            int(row[9]),
            int(row[10]),
            None if row[11] is None else int(row[11]),
            int(row[12]),
            float(row[13]),
        )

    def otp_seed(self, device_id: str) -> OtpSeed | None:
        with self._b.read() as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM otp_seeds WHERE device = ?", (device_id,)).fetchone()  # noqa: S608 - constant columns
        return None if row is None else self._otp_from(row)

    def otp_devices(self, user: str) -> list[str]:
        """The user's active devices that hold a seed of this server."""
        with self._b.read() as db:
            rows = db.execute(
                "SELECT o.device FROM otp_seeds o JOIN devices d ON d.id = o.device"
                " WHERE d.\"user\" = ? AND d.state = 'active' ORDER BY d.created",
                (user,),
            ).fetchall()
        return [str(r[0]) for r in rows]

    def otp_verify(self, device_id: str, decide: Callable[[OtpSeed], tuple[T, dict[str, Any]]]) -> tuple[str, T] | None:
        """Run `decide` on the seed of an active device under its device row's lock, store the state it
        changes (columns of STATE) in the same transaction; (the device's user, its answer), or None when the
        device is not active or has no seed. A refusal `decide` raises leaves everything as it was."""

        def run(tx: Tx) -> tuple[str, T] | None:
            device = tx.execute('SELECT state, "user" FROM devices WHERE id = ?{lock}', (device_id,)).fetchone()
            if device is None or device[0] != "active":
                return None
            row = tx.execute(f"SELECT {_COLUMNS} FROM otp_seeds WHERE device = ?", (device_id,)).fetchone()  # noqa: S608
            if row is None:
                return None
            answer, changes = decide(self._otp_from(row))
            if changes:
                assert set(changes) <= set(STATE)
                assignments = ", ".join(f"{name} = ?" for name in changes)
                sql = f"UPDATE otp_seeds SET {assignments} WHERE device = ?"  # noqa: S608 - names from STATE
                tx.execute(sql, (*changes.values(), device_id))
            return str(device[1]), answer

        return self._b.write(run)

    def otp_unblock(self, device_id: str) -> None:
        """The administrator's unblock: wrong codes counted from zero again, any resynchronisation dropped."""
        self._b.write(
            lambda tx: tx.execute(
                "UPDATE otp_seeds SET failures = 0, blocked_until = 0, resync_at = NULL WHERE device = ?", (device_id,)
            )
        )
