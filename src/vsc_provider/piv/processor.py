"""The PIV card application: one APDU in, one response out. Command chaining (CLA bit 10) gathers a long
command; a response longer than the command's Le is given out in parts (61xx, then GET RESPONSE)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from vsc_provider.ck.errors import CKRError
from vsc_provider.piv import apdu as P
from vsc_provider.piv import data, keys, pins
from vsc_provider.piv import objects as O
from vsc_provider.piv.session import PivSession
from vsc_provider.token.engine import Engine

log = logging.getLogger(__name__)

INS_SELECT = 0xA4
INS_GET_DATA = 0xCB
INS_PUT_DATA = 0xDB
INS_VERIFY = 0x20
INS_CHANGE_REFERENCE = 0x24
INS_RESET_RETRY = 0x2C
INS_GENERAL_AUTHENTICATE = 0x87
INS_GENERATE = 0x47
INS_GET_RESPONSE = 0xC0
SHORT_MAX = 256
CHAIN_MAX = 64 * 1024

Handler = Callable[[PivSession, P.Command], bytes]


def _select(session: PivSession, cmd: P.Command) -> bytes:
    if cmd.p1 != 0x04 or not 5 <= len(cmd.data) <= len(O.PIV_AID) or not O.PIV_AID.startswith(cmd.data):
        raise P.ApduError(P.SW_NOT_FOUND, "only the PIV application is here")
    session.witness = session.challenge = None
    return O.application_template()


HANDLERS: dict[int, Handler] = {
    INS_SELECT: _select,
    INS_GET_DATA: data.get_data,
    INS_PUT_DATA: data.put_data,
    INS_VERIFY: pins.verify,
    INS_CHANGE_REFERENCE: pins.change_reference_data,
    INS_RESET_RETRY: pins.reset_retry_counter,
    INS_GENERAL_AUTHENTICATE: keys.general_authenticate,
    INS_GENERATE: keys.generate,
}


class PivCard:
    """The card application over one card of the store."""

    def __init__(self, engine: Engine, slot_id: int, slot_ids: dict[int, bytes] | None = None) -> None:
        self.session = PivSession(engine, slot_id, dict(slot_ids or O.DEFAULT_SLOT_IDS))
        self._chain: tuple[int, bytes] | None = None  # (INS, data so far)
        self._pending = b""  # the rest of a long response

    def reset(self) -> None:
        """Power off, power on or reset: security state and buffers go."""
        self._chain = None
        self._pending = b""
        self.session.reset()

    def process(self, raw: bytes) -> bytes:
        try:
            cmd = P.parse(raw)
        except P.ApduError as exc:
            return P.response(sw=exc.sw)
        if cmd.ins == INS_GET_RESPONSE:
            return self._get_response(cmd)
        self._pending = b""
        if cmd.cla & ~0x10 != 0x00:
            self._chain = None
            return P.response(sw=P.SW_CLA_NOT_SUPPORTED)
        if self._chain is not None and self._chain[0] != cmd.ins:
            self._chain = None
        if cmd.chained:
            so_far = self._chain[1] if self._chain else b""
            if len(so_far) + len(cmd.data) > CHAIN_MAX:
                self._chain = None
                return P.response(sw=P.SW_WRONG_LENGTH)
            self._chain = (cmd.ins, so_far + cmd.data)
            return P.response()
        if self._chain is not None:
            cmd = P.Command(cmd.cla, cmd.ins, cmd.p1, cmd.p2, self._chain[1] + cmd.data, cmd.le, cmd.extended)
            self._chain = None
        handler = HANDLERS.get(cmd.ins)
        if handler is None:
            return P.response(sw=P.SW_INS_NOT_SUPPORTED)
        try:
            answer = handler(self.session, cmd)
        except P.ApduError as exc:
            log.debug("PIV %02X refused: %s", cmd.ins, exc)
            return P.response(sw=exc.sw)
        except CKRError as exc:
            log.info("PIV %02X failed: %s", cmd.ins, exc)
            return P.response(sw=P.SW_UNKNOWN)
        except Exception:  # a bug must not take the card out of the reader: 6F00, and the traceback logged
            log.exception("PIV %02X failed", cmd.ins)
            return P.response(sw=P.SW_UNKNOWN)
        return self._send(answer, cmd.le if cmd.le else (65536 if cmd.extended else SHORT_MAX))

    def _send(self, answer: bytes, room: int) -> bytes:
        if len(answer) <= room:
            return P.response(answer)
        self._pending = answer[room:]
        return P.response(answer[:room], 0x6100 | (len(self._pending) if len(self._pending) < SHORT_MAX else 0))

    def _get_response(self, cmd: P.Command) -> bytes:
        if not self._pending:
            return P.response(sw=P.SW_CONDITIONS)
        answer, self._pending = self._pending, b""
        return self._send(answer, cmd.le or SHORT_MAX)
