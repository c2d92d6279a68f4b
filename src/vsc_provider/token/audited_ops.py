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


def audited_call(fn: Callable[[bytes], bytes], record: Record, who: Who) -> Callable[[bytes], bytes]:
    """A one-shot key operation (C_SignRecover's) recorded at each call."""

    def call(data: bytes) -> bytes:
        try:
            out = fn(data)
        except Exception as exc:
            record(who, _rv(exc))
            raise
        record(who, C.CKR_OK)
        return out

    return call


class AuditedSigner(Signer):
    """A signer whose every signature (one-shot or final) is an audit entry; the length query signs nothing."""

    def __init__(self, inner: Signer, record: Record, who: Who) -> None:
        self.inner = inner
        self.length = inner.length
        self._record = record
        self._who = who

    def sign(self, data: bytes) -> bytes:
        try:
            out = self.inner.sign(data)
        except Exception as exc:
            self._record(self._who, _rv(exc))
            raise
        self._record(self._who, C.CKR_OK)
        return out

    def update(self, part: bytes) -> None:
        self.inner.update(part)

    def final(self) -> bytes:
        try:
            out = self.inner.final()
        except Exception as exc:
            self._record(self._who, _rv(exc))
            raise
        self._record(self._who, C.CKR_OK)
        return out

    def fresh(self) -> AuditedSigner:
        return AuditedSigner(self.inner.fresh(), self._record, self._who)


class AuditedCipherer(Cipherer):
    """A decryption whose one-shot run or final step is an audit entry."""

    def __init__(self, inner: Cipherer, record: Record, who: Who) -> None:
        self.inner = inner
        self._record = record
        self._who = who

    def run(self, data: bytes) -> bytes:  # type: ignore[override]
        try:
            out = self.inner.run(data)
        except Exception as exc:
            self._record(self._who, _rv(exc))
            raise
        self._record(self._who, C.CKR_OK)
        return out

    def update(self, part: bytes) -> bytes:
        return self.inner.update(part)

    def final(self) -> bytes:
        try:
            out = self.inner.final()
        except Exception as exc:
            self._record(self._who, _rv(exc))
            raise
        self._record(self._who, C.CKR_OK)
        return out
