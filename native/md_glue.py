# Embedding init code of the minidriver card-edge library: the def_extern card-edge functions. It turns the
# specification's C structures into Python values, calls vsc_provider.minidriver, and writes results back
# (buffers the card hands over are allocated with the caller's pfnCspAlloc, in md_shim.c's vsc_md_give).
# No card logic lives here. Every function returns an explicit status: an uncaught exception would
# otherwise become 0 (SCARD_S_SUCCESS).
import _hashlib  # noqa: F401  (initialises the system libcrypto as the PKCS#11 glue does)
import itertools as _itertools
import os as _os
import sys as _sys

from vsc_provider._minidriver import ffi, lib  # type: ignore[import-not-found]

from vsc_provider import log as _vlog
from vsc_provider.minidriver import agreement as _agreement
from vsc_provider.minidriver import auth as _auth
from vsc_provider.minidriver import containers as _containers
from vsc_provider.minidriver import context as _context
from vsc_provider.minidriver import directories as _directories
from vsc_provider.minidriver import errors as E
from vsc_provider.minidriver import files as _files
from vsc_provider.minidriver import layouts as _layouts
from vsc_provider.minidriver import properties as _properties
from vsc_provider.minidriver import signing as _signing

NULL = ffi.NULL
OK = E.SCARD_S_SUCCESS
BAD = E.SCARD_E_INVALID_PARAMETER
_log = _vlog.get("vsc.minidriver")
_vlog.configure_from_environment()
_buffer = ffi.buffer
_memmove = ffi.memmove
_MAX_LEN = 1 << 24  # no card-edge buffer comes near it: a larger length is a caller's mistake
_MAX_NAME = 256

# Contexts by the handle CardAcquireContext leaves in pvVendorSpecific, with the process that made them: a
# forked child's calls on its parent's contexts are refused (it acquires its own).
_contexts: dict[int, tuple[int, _context.CardContext]] = {}
_handles = _itertools.count(1)
_engine_pid = [_os.getpid()]


def _entry(fn):
    """Register fn as the extern "Python" py_CardX: MinidriverError -> its code, anything else -> logged and
    SCARD_E_UNEXPECTED."""
    name = fn.__name__
    is_finalizing = _sys.is_finalizing

    def call(*args):
        if is_finalizing():
            return E.SCARD_E_UNEXPECTED
        try:
            rv = fn(*args)
        except E.MinidriverError as exc:
            if _vlog.TRACE:
                _log.debug("%s -> 0x%08X (%s)", name, exc.code, exc)
            return exc.code
        except Exception:
            _log.exception("%s failed with an unexpected error", name)
            return E.SCARD_E_UNEXPECTED
        if _vlog.TRACE:
            _log.debug("%s -> 0x%08X", name, rv)
        return rv

    ffi.def_extern(name="py_" + name, error=E.SCARD_E_UNEXPECTED)(call)
    return fn


def _refuse(message):
    raise E.MinidriverError(BAD, message)


def _bytes(ptr, length):
    if length == 0:
        return b""
    if ptr == NULL or length >= _MAX_LEN:
        _refuse("a NULL buffer or a length beyond any buffer")
    return _buffer(ptr, length)[:]


def _text(ptr, root_if_null=False):
    """An LPSTR directory or file name."""
    if ptr == NULL:
        if root_if_null:
            return ""
        _refuse("a NULL name")
    raw = ffi.string(ptr, _MAX_NAME)
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        _refuse("a name that is not ASCII")


def _wide(ptr):
    """An LPWSTR / LPCWSTR (UTF-16)."""
    if ptr == NULL:
        _refuse("a NULL wide string")
    return ffi.string(ffi.cast("WCHAR *", ptr), _MAX_NAME)


def _ctx(cd):
    handle = int(ffi.cast("uintptr_t", cd.pvVendorSpecific))
    found = _contexts.get(handle)
    if found is None or found[0] != _os.getpid():
        raise E.MinidriverError(E.SCARD_E_INVALID_HANDLE, "not a context of this process")
    return found[1]


def _give(cd, data, pp_out, pcb_out):
    """A card-allocated answer: *pp_out from the caller's pfnCspAlloc, *pcb_out its length."""
    if pp_out == NULL or pcb_out == NULL:
        _refuse("NULL output pointers")
    rv = lib.vsc_md_give(cd, data, len(data), ffi.cast("PBYTE *", pp_out))
    if rv == OK:
        pcb_out[0] = len(data)
    return rv


def _give_field(cd, p, data, pb_field, cb_field):
    """A card-allocated answer into a caller's structure: P.PB_FIELD from pfnCspAlloc, P.CB_FIELD its length."""
    size = ffi.new("DWORD *")
    rv = _give(cd, data, ffi.addressof(p, pb_field), size)
    if rv == OK:
        setattr(p, cb_field, size[0])
    return rv


def _into(data, pb, cb, pdw_len):
    """A property into the caller's buffer: its length always, ERROR_INSUFFICIENT_BUFFER when it does not fit."""
    if pdw_len == NULL:
        _refuse("pdwDataLen is NULL")
    pdw_len[0] = len(data)
    if pb == NULL or cb < len(data):
        return E.ERROR_INSUFFICIENT_BUFFER
    _memmove(pb, data, len(data))
    return OK


def _struct_out(p, data):
    if p == NULL:
        _refuse("a NULL output structure")
    _memmove(p, data, len(data))
    return OK


def _tries(p_tries, value):
    if p_tries != NULL and value is not None:
        p_tries[0] = value


# --- context ---------------------------------------------------------------------------------


@_entry
def CardAcquireContext(cd, flags):
    if flags:
        _refuse("dwFlags must be 0")
    if cd.pbAtr == NULL or cd.cbAtr == 0 or cd.cbAtr > 33:
        _refuse("pbAtr / cbAtr")
    if cd.pfnCspAlloc == NULL or cd.pfnCspReAlloc == NULL or cd.pfnCspFree == NULL:
        _refuse("the CSP's allocator functions are missing")
    name = "" if cd.pwszCardName == NULL else _wide(cd.pwszCardName)
    if _os.getpid() != _engine_pid[0]:  # a forked child: its parent's engine state is not its own
        _context._engines.clear()
        _engine_pid[0] = _os.getpid()
    ctx = _context.acquire_for_caller(name, cd.dwVersion)
    cd.dwVersion = ctx.version
    handle = next(_handles)
    _contexts[handle] = (_os.getpid(), ctx)
    cd.pvVendorSpecific = ffi.cast("void *", handle)
    return OK


@_entry
def CardDeleteContext(cd):
    ctx = _ctx(cd)
    _context.delete_context(ctx)
    _contexts.pop(int(ffi.cast("uintptr_t", cd.pvVendorSpecific)), None)
    cd.pvVendorSpecific = NULL
    return OK


@_entry
def CardQueryCapabilities(cd, p):
    if p == NULL:
        _refuse("pCardCapabilities is NULL")
    return _struct_out(p, _properties.query_capabilities(_ctx(cd), p.dwVersion))


# --- PINs ------------------------------------------------------------------------------------


def _authenticated(call, p_tries):
    try:
        tries = call()
    except E.MinidriverError as exc:
        _tries(p_tries, exc.attempts_remaining)
        raise
    _tries(p_tries, tries)
    return OK


@_entry
def CardAuthenticatePin(cd, user, pb_pin, cb_pin, p_tries):
    ctx = _ctx(cd)
    user_id, pin = _wide(user), _bytes(pb_pin, cb_pin)
    return _authenticated(lambda: _auth.authenticate_pin(ctx, user_id, pin), p_tries)


@_entry
def CardAuthenticateEx(cd, pin_id, flags, pb_pin, cb_pin, pp_session, pcb_session, p_tries):
    ctx = _ctx(cd)
    pin = _bytes(pb_pin, cb_pin)
    rv = _authenticated(lambda: _auth.authenticate_ex(ctx, pin_id, flags, pin), p_tries)
    if pp_session != NULL:
        pp_session[0] = NULL
    if pcb_session != NULL:
        pcb_session[0] = 0
    return rv


@_entry
def CardGetChallenge(cd, pp_challenge, pcb_challenge):
    return _give(cd, _auth.get_challenge(_ctx(cd)), pp_challenge, pcb_challenge)


@_entry
def CardGetChallengeEx(cd, pin_id, pp_challenge, pcb_challenge, flags):
    return _give(cd, _auth.get_challenge_ex(_ctx(cd), pin_id, flags), pp_challenge, pcb_challenge)


@_entry
def CardAuthenticateChallenge(cd, pb_response, cb_response, p_tries):
    ctx = _ctx(cd)
    response = _bytes(pb_response, cb_response)
    return _authenticated(lambda: _auth.authenticate_challenge(ctx, response), p_tries)


@_entry
def CardUnblockPin(cd, user, pb_auth, cb_auth, pb_new, cb_new, retry_count, flags):
    ctx = _ctx(cd)
    _auth.unblock_pin(ctx, _wide(user), _bytes(pb_auth, cb_auth), _bytes(pb_new, cb_new), retry_count, flags)
    return OK


@_entry
def CardChangeAuthenticator(cd, user, pb_cur, cb_cur, pb_new, cb_new, retry_count, flags, p_tries):
    ctx = _ctx(cd)
    user_id, current, new = _wide(user), _bytes(pb_cur, cb_cur), _bytes(pb_new, cb_new)
    return _authenticated(lambda: _auth.change_authenticator(ctx, user_id, current, new, retry_count, flags), p_tries)


@_entry
def CardChangeAuthenticatorEx(cd, flags, auth_id, pb_auth, cb_auth, target_id, pb_target, cb_target, retry, p_tries):
    ctx = _ctx(cd)
    auth, target = _bytes(pb_auth, cb_auth), _bytes(pb_target, cb_target)
    return _authenticated(
        lambda: _auth.change_authenticator_ex(ctx, flags, auth_id, auth, target_id, target, retry), p_tries
    )


@_entry
def CardDeauthenticate(cd, user, flags):
    _auth.deauthenticate(_ctx(cd), _wide(user), flags)
    return OK


@_entry
def CardDeauthenticateEx(cd, pin_set, flags):
    _auth.deauthenticate_ex(_ctx(cd), pin_set, flags)
    return OK


# --- files -----------------------------------------------------------------------------------


@_entry
def CardCreateDirectory(cd, p_dir, access):
    _directories.create_directory(_ctx(cd), _text(p_dir), access)
    return OK


@_entry
def CardDeleteDirectory(cd, p_dir):
    _directories.delete_directory(_ctx(cd), _text(p_dir))
    return OK


@_entry
def CardCreateFile(cd, p_dir, p_file, initial_size, access):
    _files.create_file(_ctx(cd), _text(p_dir, True), _text(p_file), initial_size, access)
    return OK


@_entry
def CardReadFile(cd, p_dir, p_file, flags, pp_data, pcb_data):
    data = _files.read_file(_ctx(cd), _text(p_dir, True), _text(p_file), flags)
    return _give(cd, data, pp_data, pcb_data)


@_entry
def CardWriteFile(cd, p_dir, p_file, flags, pb_data, cb_data):
    _files.write_file(_ctx(cd), _text(p_dir, True), _text(p_file), _bytes(pb_data, cb_data), flags)
    return OK


@_entry
def CardDeleteFile(cd, p_dir, p_file, flags):
    _files.delete_file(_ctx(cd), _text(p_dir, True), _text(p_file), flags)
    return OK


@_entry
def CardEnumFiles(cd, p_dir, pp_names, pcb_names, flags):
    ctx = _ctx(cd)
    names = _files.pack_file_names(_files.enum_files(ctx, _text(p_dir, True), flags))
    return _give(cd, names, pp_names, pcb_names)


@_entry
def CardGetFileInfo(cd, p_dir, p_file, p_info):
    if p_info == NULL:
        _refuse("pCardFileInfo is NULL")
    if p_info.dwVersion > _layouts.CARD_FILE_INFO_CURRENT_VERSION:
        raise E.MinidriverError(E.ERROR_REVISION_MISMATCH, f"CARD_FILE_INFO version {p_info.dwVersion}")
    return _struct_out(p_info, _files.get_file_info(_ctx(cd), _text(p_dir, True), _text(p_file)))


@_entry
def CardQueryFreeSpace(cd, flags, p_info):
    if p_info == NULL:
        _refuse("pCardFreeSpaceInfo is NULL")
    if p_info.dwVersion > _layouts.CARD_FREE_SPACE_INFO_CURRENT_VERSION:
        raise E.MinidriverError(E.ERROR_REVISION_MISMATCH, f"CARD_FREE_SPACE_INFO version {p_info.dwVersion}")
    return _struct_out(p_info, _files.query_free_space(_ctx(cd), flags))


# --- containers ------------------------------------------------------------------------------


@_entry
def CardQueryKeySizes(cd, key_spec, flags, p_sizes):
    if p_sizes == NULL:
        _refuse("pKeySizes is NULL")
    if p_sizes.dwVersion > _layouts.CARD_KEY_SIZES_CURRENT_VERSION:
        raise E.MinidriverError(E.ERROR_REVISION_MISMATCH, f"CARD_KEY_SIZES version {p_sizes.dwVersion}")
    return _struct_out(p_sizes, _properties.query_key_sizes(_ctx(cd), key_spec, flags))


def _key_blob(key_spec, pb_key):
    if pb_key == NULL:
        return None
    rsa = key_spec in (_containers.AT_KEYEXCHANGE, _containers.AT_SIGNATURE)
    head = _buffer(pb_key, 20 if rsa else 8)[:]
    size = _layouts.private_blob_length(head, rsa)
    if size >= _MAX_LEN:
        raise E.MinidriverError(E.NTE_BAD_DATA, "key blob length")
    return _buffer(pb_key, size)[:]


@_entry
def CardCreateContainer(cd, index, flags, key_spec, key_size, pb_key):
    ctx = _ctx(cd)
    key = _key_blob(key_spec, pb_key) if flags == _containers.CARD_CREATE_CONTAINER_KEY_IMPORT else None
    _containers.create_container(ctx, index, flags, key_spec, key_size, key)
    return OK


@_entry
def CardCreateContainerEx(cd, index, flags, key_spec, key_size, pb_key, pin_id):
    if pin_id != _auth.ROLE_USER:
        _refuse("container keys belong to the user PIN")
    return CardCreateContainer(cd, index, flags, key_spec, key_size, pb_key)


@_entry
def CardDeleteContainer(cd, index, reserved):
    _containers.delete_container(_ctx(cd), index, reserved)
    return OK


def _container_info_out(cd, info, p_info):
    p_info.dwVersion = info.version
    p_info.cbSigPublicKey = p_info.cbKeyExPublicKey = 0
    p_info.pbSigPublicKey = p_info.pbKeyExPublicKey = NULL
    for blob, pb_field, cb_field in (
        (info.sig_public_key, "pbSigPublicKey", "cbSigPublicKey"),
        (info.keyex_public_key, "pbKeyExPublicKey", "cbKeyExPublicKey"),
    ):
        if not blob:
            continue
        rv = _give_field(cd, p_info, blob, pb_field, cb_field)
        if rv != OK:
            if p_info.pbSigPublicKey != NULL:
                cd.pfnCspFree(p_info.pbSigPublicKey)
                p_info.pbSigPublicKey = NULL
            return rv
    return OK


@_entry
def CardGetContainerInfo(cd, index, flags, p_info):
    if p_info == NULL:
        _refuse("pContainerInfo is NULL")
    info = _containers.get_container_info(_ctx(cd), index, flags, p_info.dwVersion)
    return _container_info_out(cd, info, p_info)


@_entry
def CardGetContainerProperty(cd, index, p_name, pb_data, cb_data, pdw_len, flags):
    ctx = _ctx(cd)
    name = _wide(p_name)
    answer = _properties.get_container_property(ctx, index, name, flags)
    if isinstance(answer, bytes):
        return _into(answer, pb_data, cb_data, pdw_len)
    size = ffi.sizeof("CONTAINER_INFO")
    if pdw_len == NULL:
        _refuse("pdwDataLen is NULL")
    pdw_len[0] = size
    if pb_data == NULL or cb_data < size:
        return E.ERROR_INSUFFICIENT_BUFFER
    return _container_info_out(cd, answer, ffi.cast("PCONTAINER_INFO", pb_data))


@_entry
def CardSetContainerProperty(cd, index, p_name, pb_data, cb_data, flags):
    _ctx(cd)
    raise E.MinidriverError(E.SCARD_E_UNSUPPORTED_FEATURE, f"container property {_wide(p_name)!r} is fixed")


# --- properties ------------------------------------------------------------------------------


@_entry
def CardGetProperty(cd, p_name, pb_data, cb_data, pdw_len, flags):
    data = _properties.get_property(_ctx(cd), _wide(p_name), flags)
    return _into(data, pb_data, cb_data, pdw_len)


@_entry
def CardSetProperty(cd, p_name, pb_data, cb_data, flags):
    _properties.set_property(_ctx(cd), _wide(p_name), _bytes(pb_data, cb_data), flags)
    return OK


# --- signing, decryption, agreement ----------------------------------------------------------


def _padding(kind, p_padding):
    if p_padding == NULL:
        return None
    if kind == _signing.CARD_PADDING_PSS:
        pss = ffi.cast("BCRYPT_PSS_PADDING_INFO *", p_padding)
        return _signing.PaddingInfo(None if pss.pszAlgId == NULL else _wide(pss.pszAlgId), pss.cbSalt)
    if kind == _signing.CARD_PADDING_OAEP:
        oaep = ffi.cast("BCRYPT_OAEP_PADDING_INFO *", p_padding)
        alg = None if oaep.pszAlgId == NULL else _wide(oaep.pszAlgId)
        return _signing.PaddingInfo(alg, 0, _bytes(oaep.pbLabel, oaep.cbLabel))
    if kind == _signing.CARD_PADDING_PKCS1:
        pkcs1 = ffi.cast("BCRYPT_PKCS1_PADDING_INFO *", p_padding)
        return _signing.PaddingInfo(None if pkcs1.pszAlgId == NULL else _wide(pkcs1.pszAlgId))
    return None


@_entry
def CardSignData(cd, p):
    if p == NULL:
        _refuse("pInfo is NULL")
    version = p.dwVersion
    present = version >= 2 and p.dwSigningFlags & _signing.CARD_PADDING_INFO_PRESENT
    info = _signing.SigningInfo(
        version,
        p.bContainerIndex,
        p.dwKeySpec,
        p.dwSigningFlags,
        p.aiHashAlg,
        _bytes(p.pbData, p.cbData),
        _padding(p.dwPaddingType, p.pPaddingInfo) if present else None,
        p.dwPaddingType if version >= 2 else 0,
    )
    signature = _signing.sign_data(_ctx(cd), info)
    if p.dwSigningFlags & _signing.CARD_BUFFER_SIZE_ONLY:
        p.cbSignedData = info.cb_signed_data
        return OK
    return _give_field(cd, p, signature, "pbSignedData", "cbSignedData")


@_entry
def CardRSADecrypt(cd, p):
    if p == NULL:
        _refuse("pInfo is NULL")
    version = p.dwVersion
    info = _signing.RsaDecryptInfo(
        version,
        p.bContainerIndex,
        p.dwKeySpec,
        _bytes(p.pbData, p.cbData),
        _padding(p.dwPaddingType, p.pPaddingInfo) if version >= 2 else None,
        p.dwPaddingType if version >= 2 else 0,
    )
    plain = _signing.rsa_decrypt(_ctx(cd), info)
    _memmove(p.pbData, plain, len(plain))
    p.cbData = len(plain)
    return OK


@_entry
def CardConstructDHAgreement(cd, p):
    if p == NULL:
        _refuse("pAgreementInfo is NULL")
    info = _agreement.DhAgreementInfo(p.dwVersion, p.bContainerIndex, p.dwFlags, _bytes(p.pbPublicKey, p.dwPublicKey))
    p.bSecretAgreementIndex = _agreement.construct_dh_agreement(_ctx(cd), info)
    return OK


def _kdf_parameters(p_list):
    if p_list == NULL:
        return []
    desc = ffi.cast("BCryptBufferDesc *", p_list)
    if desc.cBuffers > 64 or (desc.cBuffers and desc.pBuffers == NULL):
        _refuse("KDF parameter list")
    out = []
    for i in range(desc.cBuffers):
        b = desc.pBuffers[i]
        if b.BufferType == _agreement.KDF_HASH_ALGORITHM:
            out.append((b.BufferType, _wide(b.pvBuffer)))
        else:
            out.append((b.BufferType, _bytes(b.pvBuffer, b.cbBuffer)))
    return out


@_entry
def CardDeriveKey(cd, p):
    if p == NULL:
        _refuse("pAgreementInfo is NULL")
    info = _agreement.DeriveKeyInfo(
        p.dwVersion,
        p.dwFlags,
        _wide(p.pwszKDF),
        p.bSecretAgreementIndex,
        _kdf_parameters(p.pParameterList),
    )
    key = _agreement.derive_key(_ctx(cd), info)
    if p.dwFlags & _agreement.CARD_BUFFER_SIZE_ONLY:
        p.cbDerivedKey = info.cb_derived_key
        return OK
    return _give_field(cd, p, key, "pbDerivedKey", "cbDerivedKey")


@_entry
def CardDestroyDHAgreement(cd, index, flags):
    _agreement.destroy_dh_agreement(_ctx(cd), index, flags)
    return OK


lib.vsc_mark_ready()
