"""Sign and decrypt operations that record each use of their key in the audit log (token/audit.py): the
prepared operation carries the entry's fixed part, so a use costs one append."""

from __future__ import annotations

from collections.abc import Callable

from vsc_provider.ck import constants as C
from vsc_provider.token.audit import Who
from vsc_provider.token.operation import Cipherer, Signer

Record = Callable[[Who, int], None]


def _rv(exc: Exception) -> int:
    return int(getattr(exc, "rv", C.CKR_FUNCTION_FAILED))


def recorded(record: Record, who: Who, step: Callable[..., bytes], *args: bytes) -> bytes:
    """STEP's output, its use recorded with its result (CKR_OK, or the refusal's code, re-raised)."""
    try:
        out = step(*args)
    except Exception as exc:
        record(who, _rv(exc))
        raise
    record(who, C.CKR_OK)
    return out


def audited_call(fn: Callable[[bytes], bytes], record: Record, who: Who) -> Callable[[bytes], bytes]:
    """A one-shot key operation (C_SignRecover's) recorded at each call."""
    return lambda data: recorded(record, who, fn, data)


class AuditedSigner(Signer):
    """A signer whose every signature (one-shot or final) is an audit entry; the length query signs nothing."""

    def __init__(self, inner: Signer, record: Record, who: Who) -> None:
        self.inner = inner
        self.length = inner.length
        self._record = record
        self._who = who
        self._sign = inner.sign

    def sign(self, data: bytes) -> bytes:  # recorded(), written out: the hot path of C_Sign
        try:
            out = self._sign(data)
        except Exception as exc:
            self._record(self._who, _rv(exc))
            raise
        self._record(self._who, C.CKR_OK)
        return out

    def update(self, part: bytes) -> None:
        self.inner.update(part)

    def final(self) -> bytes:
        return recorded(self._record, self._who, self.inner.final)

    def fresh(self) -> AuditedSigner:
        return AuditedSigner(self.inner.fresh(), self._record, self._who)


class AuditedCipherer(Cipherer):
    """A decryption whose one-shot run or final step is an audit entry."""

    def __init__(self, inner: Cipherer, record: Record, who: Who) -> None:
        self.inner = inner
        self._record = record
        self._who = who

    def run(self, data: bytes) -> bytes:  # type: ignore[override]
        return recorded(self._record, self._who, self.inner.run, data)

    def update(self, part: bytes) -> bytes:
        return self.inner.update(part)

    def final(self) -> bytes:
        return recorded(self._record, self._who, self.inner.final)
