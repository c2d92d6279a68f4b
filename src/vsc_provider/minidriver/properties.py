"""CardQueryCapabilities, CardQueryKeySizes, CardGetProperty / CardSetProperty and CardGetContainerProperty:
each answer is the specification's byte layout (layouts.py)."""

from __future__ import annotations

from vsc_provider.minidriver import auth, files
from vsc_provider.minidriver import containers as K
from vsc_provider.minidriver import errors as E
from vsc_provider.minidriver import layouts as L
from vsc_provider.minidriver.context import CardContext

CP_CARD_FREE_SPACE = "Free Space"
CP_CARD_CAPABILITIES = "Capabilities"
CP_CARD_KEYSIZES = "Key Sizes"
CP_CARD_READ_ONLY = "Read Only Mode"
CP_CARD_CACHE_MODE = "Cache Mode"
CP_SUPPORTS_WIN_X509_ENROLLMENT = "Supports Windows x.509 Enrollment"
CP_CARD_GUID = "Card Identifier"
CP_CARD_SERIAL_NO = "Card Serial Number"
CP_CARD_PIN_INFO = "PIN Information"
CP_CARD_LIST_PINS = "PIN List"
CP_CARD_AUTHENTICATED_STATE = "Authenticated State"
CP_CARD_PIN_STRENGTH_VERIFY = "PIN Strength Verify"
CP_KEY_IMPORT_SUPPORT = "Key Import Support"
CP_PARENT_WINDOW = "Parent Window"
CP_PIN_CONTEXT_STRING = "PIN Context String"
CCP_CONTAINER_INFO = "Container Info"
CCP_PIN_IDENTIFIER = "PIN Identifier"
CP_CACHE_MODE_GLOBAL_CACHE = 1
CARD_PIN_STRENGTH_PLAINTEXT = 0x1
CRYPT_IMPORT_RSA_PRIVATE = 0x1  # Key Import Support bits (cardmod.h v7)
CRYPT_IMPORT_ECC_PRIVATE = 0x4


def query_capabilities(ctx: CardContext, version: int = 1) -> bytes:
    """CARD_CAPABILITIES: keys are generated on the card, certificates are stored uncompressed."""
    if version > 1:
        raise E.MinidriverError(E.ERROR_REVISION_MISMATCH, f"CARD_CAPABILITIES version {version}")
    return L.card_capabilities(certificate_compression=False, key_gen=True)


def query_key_sizes(ctx: CardContext, key_spec: int, flags: int = 0) -> bytes:
    """CARD_KEY_SIZES for a key spec: RSA from the card policy's minimum to 4096 in steps of 1024, the curves'
    own size for ECDSA and ECDH."""
    if flags:
        raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, "dwFlags must be 0")
    if key_spec in (K.AT_KEYEXCHANGE, K.AT_SIGNATURE):
        minimum = max(2048, ctx.card.policy.rsa_min_bits)
        return L.key_sizes(minimum, max(minimum, 2048), 4096, 1024)
    for table in (K.AT_ECDSA, K.AT_ECDHE):
        for bits, spec in table.items():
            if spec == key_spec:
                if bits not in (256, 384):  # P-521: a key spec the card does not offer
                    raise E.MinidriverError(E.SCARD_E_UNSUPPORTED_FEATURE, f"key spec {key_spec}")
                return L.key_sizes(bits, bits, bits, 0)
    raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, f"no key spec {key_spec}")


def _pin_info(pin_id: int) -> bytes:
    if pin_id == auth.ROLE_USER:
        return L.pin_info(
            L.ALPHANUMERIC_PIN_TYPE, L.AUTHENTICATION_PIN, L.pin_set(auth.ROLE_USER), L.pin_set(auth.ROLE_ADMIN)
        )
    if pin_id == auth.ROLE_ADMIN:
        return L.pin_info(L.ALPHANUMERIC_PIN_TYPE, L.ADMINISTRATOR_PIN, L.pin_set(auth.ROLE_ADMIN), 0)
    raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, f"no PIN {pin_id} on this card")


def _dword(value: int) -> bytes:
    return value.to_bytes(4, "little")


def get_property(ctx: CardContext, name: str, flags: int = 0) -> bytes:
    """CardGetProperty: the property's bytes (DWORDs little-endian, BOOLs as DWORDs)."""
    card = ctx.fresh()
    if name == CP_CARD_PIN_INFO:
        return _pin_info(flags)
    if name == CP_CARD_KEYSIZES:  # dwFlags is the key spec here, as CardQueryKeySizes' dwKeySpec
        return query_key_sizes(ctx, flags)
    if flags and name != CP_CARD_PIN_STRENGTH_VERIFY:
        raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, "dwFlags must be 0")
    if name == CP_CARD_FREE_SPACE:
        return files.query_free_space(ctx)
    if name == CP_CARD_CAPABILITIES:
        return query_capabilities(ctx)
    if name == CP_CARD_READ_ONLY:
        return _dword(0)
    if name == CP_CARD_CACHE_MODE:
        return _dword(CP_CACHE_MODE_GLOBAL_CACHE)
    if name == CP_SUPPORTS_WIN_X509_ENROLLMENT:
        return _dword(1)
    if name == CP_CARD_GUID:
        return files.card_guid(card)
    if name == CP_CARD_SERIAL_NO:
        return card.serial.encode()
    if name == CP_CARD_LIST_PINS:
        return _dword(L.pin_set(auth.ROLE_USER, auth.ROLE_ADMIN))
    if name == CP_CARD_AUTHENTICATED_STATE:
        return _dword(auth.authenticated_roles(ctx))
    if name == CP_CARD_PIN_STRENGTH_VERIFY:
        _pin_info(flags)
        return _dword(CARD_PIN_STRENGTH_PLAINTEXT)
    if name == CP_KEY_IMPORT_SUPPORT:
        return _dword(CRYPT_IMPORT_RSA_PRIVATE | CRYPT_IMPORT_ECC_PRIVATE)
    raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, f"no property {name!r}")


def set_property(ctx: CardContext, name: str, data: bytes, flags: int = 0) -> None:
    """CardSetProperty: the parent window and PIN context string are accepted (no UI here); the card's own
    properties are read-only (SCARD_W_SECURITY_VIOLATION)."""
    if name in (CP_PARENT_WINDOW, CP_PIN_CONTEXT_STRING):
        return
    if name in (
        CP_CARD_READ_ONLY,
        CP_CARD_CACHE_MODE,
        CP_CARD_GUID,
        CP_CARD_SERIAL_NO,
        CP_CARD_PIN_INFO,
        CP_SUPPORTS_WIN_X509_ENROLLMENT,
    ):
        raise E.MinidriverError(E.SCARD_W_SECURITY_VIOLATION, f"{name!r} is fixed by the card")
    raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, f"no settable property {name!r}")


def get_container_property(ctx: CardContext, index: int, name: str, flags: int = 0) -> bytes | L.ContainerInfo:
    """CardGetContainerProperty: CCP_CONTAINER_INFO (as CardGetContainerInfo) or CCP_PIN_IDENTIFIER (the user)."""
    if flags:
        raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, "dwFlags must be 0")
    if name == CCP_CONTAINER_INFO:
        return K.get_container_info(ctx, index)
    if name == CCP_PIN_IDENTIFIER:
        K.container(ctx, index)
        return _dword(auth.ROLE_USER)
    raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, f"no container property {name!r}")
