"""A SQLite file that several processes and threads write, as the card store (token/store.py) and the identity
server's database (server/db.py) both open theirs: explicit BEGIN IMMEDIATE transactions, one connection
shared by the process's threads under the caller's lock, and up to 30 s of waiting for another writer."""

from __future__ import annotations

import sqlite3


def connect(path: str) -> sqlite3.Connection:
    return sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)


def create_schema(db: sqlite3.Connection, schema: str) -> None:
    """Each `;`-separated statement of `schema` (CREATE ... IF NOT EXISTS), inside the caller's transaction."""
    for statement in schema.split(";"):
        if statement.strip():
            db.execute(statement)
