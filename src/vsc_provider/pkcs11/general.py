"""C_Initialize and C_Finalize (C_GetInfo is a constant answered in native/shim.c)."""

from __future__ import annotations

from vsc_provider import log as vlog
from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.pkcs11.state import LIB, InitArgs
from vsc_provider.provisioning.online import ServerPinCheck
from vsc_provider.token.engine import Engine

log = vlog.get("vsc.pkcs11")


def initialize(args: InitArgs | None) -> None:
    if args is not None:
        if args.reserved:
            raise CKRError(C.CKR_ARGUMENTS_BAD, "pReserved must be NULL")
        if any(args.mutex_functions) and not all(args.mutex_functions):
            raise CKRError(C.CKR_ARGUMENTS_BAD, "mutex functions must be all given or none")
        # Every locking case is fine: the engine locks with OS primitives of its own and starts no threads.
    with LIB.lock:
        if LIB.engine is not None and not LIB.forked:
            raise CKRError(C.CKR_CRYPTOKI_ALREADY_INITIALIZED)
        # A forked child inherits the parent's state: drop it without touching the parent's store handle.
        if LIB.engine is not None:
            LIB.abandoned.append(LIB.engine)
        LIB.engine = None
        LIB.sessions.clear()
        try:
            engine = Engine()
        except CKRError:
            raise
        except Exception as exc:
            log.exception("cannot open the card store")
            raise CKRError(C.CKR_DEVICE_ERROR, f"cannot open the card store: {exc}") from exc
        # Server-checked PINs (provisioned cards) reach their server through provisioning: its HTTP and JOSE
        # load at the first such PIN, so a host with local cards only never imports them.
        engine.online = ServerPinCheck()
        engine.audit.front_end = "pkcs11"
        LIB.engine = engine
        LIB.forked = False
        LIB.seen_slots = frozenset(engine.cards)
        LIB.finalized.clear()


def finalize() -> None:
    with LIB.lock:
        engine = LIB.require()
        engine.audit.close()  # fold the journal before the host may exit without a word
        for card in engine.cards.values():
            card.forget_secrets()
            card.session_objects.clear()
        LIB.sessions.clear()
        LIB.engine = None
        LIB.finalized.set()
