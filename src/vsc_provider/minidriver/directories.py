"""CardCreateDirectory / CardDeleteDirectory. The card's directories are the root, `mscp` and the first part of
each stored file's name (files.py): a directory made here and still empty lives in the context until a file
is written into it, and a directory goes when its last file goes."""

from __future__ import annotations

from vsc_provider.minidriver import errors as E
from vsc_provider.minidriver import files
from vsc_provider.minidriver.context import CardContext

USER_CREATE_DELETE_DIR_AC = 1  # CARD_DIRECTORY_ACCESS_CONDITION
ADMIN_CREATE_DELETE_DIR_AC = 2
_FIXED = ("", "mscp")


def _name(directory: str) -> str:
    if not directory or "/" in directory or len(directory) > 8 or not directory.isprintable():
        raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, f"directory name {directory!r}")
    return directory


def _exists(ctx: CardContext, directory: str) -> bool:
    try:
        files.enum_files(ctx, directory)
    except E.MinidriverError as exc:
        if exc.code == E.SCARD_E_DIR_NOT_FOUND:
            return False
        raise
    return True


def create_directory(ctx: CardContext, directory: str, access: int) -> None:
    if access not in (USER_CREATE_DELETE_DIR_AC, ADMIN_CREATE_DELETE_DIR_AC):
        raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, f"access condition {access}")
    directory = _name(directory)
    card = ctx.fresh()
    if not card.user and not (access == ADMIN_CREATE_DELETE_DIR_AC and ctx.admin):
        raise E.MinidriverError(E.SCARD_W_SECURITY_VIOLATION, "authenticate first")
    if directory in _FIXED or directory in ctx.created_dirs or _exists(ctx, directory):
        raise E.MinidriverError(E.ERROR_FILE_EXISTS, f"directory {directory!r} exists")
    ctx.created_dirs.add(directory)


def delete_directory(ctx: CardContext, directory: str) -> None:
    directory = _name(directory)
    if directory in _FIXED:
        raise E.MinidriverError(E.SCARD_W_SECURITY_VIOLATION, f"{directory!r} is the card's own")
    if not ctx.fresh().user and not ctx.admin:
        raise E.MinidriverError(E.SCARD_W_SECURITY_VIOLATION, "authenticate first")
    if not _exists(ctx, directory):
        raise E.MinidriverError(E.SCARD_E_DIR_NOT_FOUND, f"no directory {directory!r}")
    if files.enum_files(ctx, directory):
        raise E.MinidriverError(E.ERROR_DIR_NOT_EMPTY, f"directory {directory!r} has files")
    ctx.created_dirs.discard(directory)
