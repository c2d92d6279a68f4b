"""The card's file system as the specification names it, made from the card's objects:

- `cardid` (16 bytes, from the card's serial), `cardapps` ("mscp"), `cardcf` (freshness counters),
- `mscp/cmapfile` (a record per container), `mscp/kxcNN` / `mscp/kscNN` (the DER certificate with the CKA_ID
  of container NN's key, NN in decimal),
- any other file a CSP creates: a data object (CKA_APPLICATION "vsc-minidriver", CKA_LABEL "dir/name"),
  private for user- or admin-only files.

cardcf's counters are digests of what they stand for (the PIN wrappings; the key pairs; the certificates and
files), so they change whenever anything changes the card, PKCS#11 and `vsc` included, and a CSP's cache is
never stale. A CSP's own write of cardcf is accepted and has no effect.
"""

from __future__ import annotations

import hashlib
import re
import uuid

from vsc_provider.ck import attributes as A
from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.minidriver import containers as K
from vsc_provider.minidriver import errors as E
from vsc_provider.minidriver import layouts as L
from vsc_provider.minidriver.context import CardContext
from vsc_provider.token import object_attrs, service
from vsc_provider.token.engine import Card
from vsc_provider.token.objects import TokenObject

APPLICATION = "vsc-minidriver"
CARDAPPS = b"mscp\0\0\0\0"
_CERT_NAME = re.compile(r"^(kxc|ksc)(\d{2})$")
_CARDID_NAMESPACE = uuid.UUID("0b0e7f43-5a8c-4c55-8c1f-2a2f3b1d9e61")
_FIXED_AC = {
    ("", "cardid"): L.EVERYONE_READ_ADMIN_WRITE_AC,
    ("", "cardapps"): L.EVERYONE_READ_ADMIN_WRITE_AC,
    ("", "cardcf"): L.EVERYONE_READ_USER_WRITE_AC,
    ("mscp", "cmapfile"): L.EVERYONE_READ_USER_WRITE_AC,
}
_PRIVATE_AC = (L.USER_READ_WRITE_AC, L.ADMIN_READ_WRITE_AC, L.USER_WRITE_EXECUTE_AC)


def card_guid(card: Card) -> bytes:
    """cardid and CP_CARD_GUID: 16 bytes fixed by the card's serial."""
    return uuid.uuid5(_CARDID_NAMESPACE, card.serial).bytes


def _digest(parts: list[bytes], size: int) -> int:
    h = hashlib.blake2b(digest_size=size)
    for part in parts:
        h.update(len(part).to_bytes(4, "little") + part)
    return int.from_bytes(h.digest(), "little")


def _object_parts(objs: list[TokenObject]) -> list[bytes]:
    out = []
    for o in sorted(objs, key=lambda o: o.handle):
        out.append(o.handle.to_bytes(8, "little") + o.uid)
        out.extend(k.to_bytes(8, "little") + v for k, v in sorted(o.attrs.items()))
    return out


def cache_file(ctx: CardContext) -> L.CacheFile:
    """cardcf's counters as the card stands now (only what anyone can see counts, so logging in changes none)."""
    card = ctx.fresh()
    rec = card.record
    pins = _digest([rec.user_salt or b"", rec.so_salt or b"", str(rec.created).encode()], 1)
    public = [o for o in list(card.objects.values()) if not o.private]
    keys = [o for o in public if o.klass == C.CKO_PUBLIC_KEY]
    files = [o for o in public if o.klass == C.CKO_CERTIFICATE or _is_file(o)]
    return L.CacheFile(
        L.CARD_CACHE_FILE_CURRENT_VERSION, pins, _digest(_object_parts(keys), 2), _digest(_object_parts(files), 2)
    )


def _is_file(o: TokenObject) -> bool:
    return o.klass == C.CKO_DATA and A.decode(C.CKA_APPLICATION, o.attrs.get(C.CKA_APPLICATION, b"")) == APPLICATION


def _label(o: TokenObject) -> str:
    return str(A.decode(C.CKA_LABEL, o.attrs.get(C.CKA_LABEL, b"")))


def _file_objects(card: Card, directory: str, name: str | None = None) -> list[TokenObject]:
    prefix = f"{directory}/"
    return [
        o
        for o in list(card.objects.values())
        if card.visible(o)
        and _is_file(o)
        and _label(o).startswith(prefix)
        and (name is None or _label(o) == prefix + name)
    ]


def _cert_container(ctx: CardContext, name: str) -> tuple[K.Container, str] | None:
    m = _CERT_NAME.match(name)
    if not m:
        return None
    found = K.containers(ctx)
    index = int(m.group(2))
    if index >= len(found):
        raise E.MinidriverError(E.SCARD_E_FILE_NOT_FOUND, f"no container {index} for mscp/{name}")
    return found[index], m.group(1)


def _certificates(card: Card, key_id: bytes) -> list[TokenObject]:
    return service.with_key_id(card, key_id, C.CKO_CERTIFICATE)


def _cert_file_names(ctx: CardContext) -> list[str]:
    card = ctx.card
    names = []
    for c in K.containers(ctx):
        if _certificates(card, c.key_id):
            prefix = "kxc" if c.keyex_bits else "ksc"
            names.append(f"{prefix}{c.index:02d}")
    return names


def _check_dir(directory: str) -> str:
    if directory.startswith("/"):
        directory = directory[1:]
    if "/" in directory or len(directory) > 8:
        raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, f"directory {directory!r}")
    return directory


def enum_files(ctx: CardContext, directory: str, flags: int = 0) -> list[str]:
    """CardEnumFiles: the file names of a directory ("" is the root)."""
    if flags:
        raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, "dwFlags must be 0")
    directory = _check_dir(directory)
    card = ctx.fresh()
    names = [n for d, n in _FIXED_AC if d == directory]
    if directory == "mscp":
        names += _cert_file_names(ctx)
    extra = [_label(o).split("/", 1)[1] for o in _file_objects(card, directory)]
    pending = [n for d, n in ctx.created_files if d == directory]
    names += sorted(set(extra + pending) - set(names))
    if not names and directory not in ("", "mscp") and directory not in ctx.created_dirs:
        raise E.MinidriverError(E.SCARD_E_DIR_NOT_FOUND, f"no directory {directory!r}")
    return names


def pack_file_names(names: list[str]) -> bytes:
    """CardEnumFiles' multi-string: each name NUL-terminated, then one more NUL."""
    return b"".join(n.encode() + b"\0" for n in names) + b"\0"


def read_file(ctx: CardContext, directory: str, name: str, flags: int = 0) -> bytes:
    """CardReadFile."""
    if flags:
        raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, "dwFlags must be 0")
    directory = _check_dir(directory)
    card = ctx.fresh()
    if (directory, name) == ("", "cardid"):
        return card_guid(card)
    if (directory, name) == ("", "cardapps"):
        return CARDAPPS
    if (directory, name) == ("", "cardcf"):
        return cache_file(ctx).pack()
    if (directory, name) == ("mscp", "cmapfile"):
        return L.pack_cmapfile(K.cmap_records(ctx))
    if directory == "mscp":
        found = _cert_container(ctx, name)
        if found is not None:
            certs = _certificates(card, found[0].key_id)
            if certs:
                return certs[0].attrs.get(C.CKA_VALUE, b"")
            if (directory, name) in ctx.created_files:
                return b""
            raise E.MinidriverError(E.SCARD_E_FILE_NOT_FOUND, f"no certificate for container {found[0].index}")
    objs = _file_objects(card, directory, name)
    if objs:
        return objs[0].attrs.get(C.CKA_VALUE, b"")
    if (directory, name) in ctx.created_files:
        return b""
    raise E.MinidriverError(E.SCARD_E_FILE_NOT_FOUND, f"no file {directory}/{name}")


def _user(card: Card) -> None:
    if not card.user:
        raise E.MinidriverError(E.SCARD_W_SECURITY_VIOLATION, "authenticate the user first")


def _exists(ctx: CardContext, directory: str, name: str) -> bool:
    try:
        read_file(ctx, directory, name)
    except E.MinidriverError as exc:
        if exc.code == E.SCARD_E_FILE_NOT_FOUND:
            return False
        raise
    return True


def create_file(
    ctx: CardContext, directory: str, name: str, initial_size: int = 0, access: int = L.EVERYONE_READ_USER_WRITE_AC
) -> None:
    """CardCreateFile: an empty file (stored at its first write; a data file's privacy follows `access`)."""
    directory = _check_dir(directory)
    if not name or len(name) > 8 or "/" in name:
        raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, f"file name {name!r}")
    if access not in (*_PRIVATE_AC, L.EVERYONE_READ_USER_WRITE_AC, L.EVERYONE_READ_ADMIN_WRITE_AC):
        raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, f"access condition {access}")
    _user(ctx.fresh())
    if (directory, name) in _FIXED_AC or _exists(ctx, directory, name):
        raise E.MinidriverError(E.ERROR_FILE_EXISTS, f"{directory}/{name} exists")
    ctx.created_files[(directory, name)] = access


def write_file(ctx: CardContext, directory: str, name: str, data: bytes, flags: int = 0) -> None:
    """CardWriteFile: cmapfile names containers about to be made, kxcNN/kscNN store the container's
    certificate (CKA_ID of its key), other files are data objects; cardid and cardapps are the card's own."""
    if flags:
        raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, "dwFlags must be 0")
    directory = _check_dir(directory)
    card = ctx.fresh()
    if (directory, name) in (("", "cardid"), ("", "cardapps")):
        raise E.MinidriverError(E.SCARD_W_SECURITY_VIOLATION, f"{name} is fixed by the card")
    _user(card)
    if (directory, name) == ("", "cardcf"):
        return
    if (directory, name) == ("mscp", "cmapfile"):
        K.write_cmapfile(ctx, data)
        return
    try:
        if directory == "mscp" and _cert_container(ctx, name) is not None:
            _write_certificate(ctx, name, data)
            return
        if not _exists(ctx, directory, name):
            raise E.MinidriverError(E.SCARD_E_FILE_NOT_FOUND, f"no file {directory}/{name}: create it first")
        private = _private(ctx, directory, name)
        for old in _file_objects(card, directory, name):
            service.destroy(ctx.engine, card, old)
        attrs = object_attrs.data_attrs(
            data, label=f"{directory}/{name}", application=APPLICATION, token=True, private=private
        )
        ctx.engine.add_object(card, card.policy.settle(attrs), None, True, 0)
    except CKRError as exc:
        raise E.from_ckr(exc) from None
    ctx.created_files.pop((directory, name), None)


def _write_certificate(ctx: CardContext, name: str, data: bytes) -> None:
    from cryptography import x509

    found = _cert_container(ctx, name)
    assert found is not None
    c = found[0]
    try:
        x509.load_der_x509_certificate(data)
    except ValueError:
        raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, f"mscp/{name} takes a DER certificate") from None
    card = ctx.card
    for old in _certificates(card, c.key_id):
        service.destroy(ctx.engine, card, old)
    service.store_certificate(ctx.engine, card, data, c.key_id, c.name)
    ctx.created_files.pop(("mscp", name), None)


def _private(ctx: CardContext, directory: str, name: str) -> bool:
    created = ctx.created_files.get((directory, name))
    if created is not None:
        return created in _PRIVATE_AC
    return any(o.private for o in _file_objects(ctx.card, directory, name))


def delete_file(ctx: CardContext, directory: str, name: str, flags: int = 0) -> None:
    """CardDeleteFile (a container's certificate file destroys its certificate object)."""
    if flags:
        raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, "dwFlags must be 0")
    directory = _check_dir(directory)
    card = ctx.fresh()
    if (directory, name) in _FIXED_AC:
        raise E.MinidriverError(E.SCARD_W_SECURITY_VIOLATION, f"{name} is the card's own")
    _user(card)
    if not _exists(ctx, directory, name):
        raise E.MinidriverError(E.SCARD_E_FILE_NOT_FOUND, f"no file {directory}/{name}")
    targets: list[TokenObject] = []
    if directory == "mscp" and _CERT_NAME.match(name):
        found = _cert_container(ctx, name)
        assert found is not None
        targets = _certificates(card, found[0].key_id)
    else:
        targets = _file_objects(card, directory, name)
    try:
        for obj in targets:
            service.destroy(ctx.engine, card, obj)
    except CKRError as exc:
        raise E.from_ckr(exc) from None
    ctx.created_files.pop((directory, name), None)


def get_file_info(ctx: CardContext, directory: str, name: str) -> bytes:
    """CardGetFileInfo: CARD_FILE_INFO (size and access condition)."""
    directory = _check_dir(directory)
    size = len(read_file(ctx, directory, name))
    access = _FIXED_AC.get((directory, name))
    if access is None:
        access = L.USER_READ_WRITE_AC if _private(ctx, directory, name) else L.EVERYONE_READ_USER_WRITE_AC
    return L.file_info(size, access)


def query_free_space(ctx: CardContext, flags: int = 0) -> bytes:
    """CardQueryFreeSpace: CARD_FREE_SPACE_INFO (bytes unknown: the store grows as needed)."""
    if flags:
        raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, "dwFlags must be 0")
    used = len(K.containers(ctx))
    return L.free_space_info(L.CARD_DATA_VALUE_UNKNOWN, K.MAX_CONTAINERS - used, K.MAX_CONTAINERS)
