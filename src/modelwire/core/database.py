"""The metadata database: SQLite in the data directory, or a PostgreSQL server.

SQLite (WAL, synchronous=FULL) is the embedded default: nothing to run, one machine.
PostgreSQL (`--database-url postgresql://...`) lets several servers, on several
machines, share datasets and training jobs, with the image files and trained models on a
shared filesystem path. The stores write their SQL once, with `?` placeholders and the
syntax both accept (`INSERT ... ON CONFLICT`); this module owns what differs: connecting,
placeholders, write transactions, the errors, and column types.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from modelwire.core.extras import optional
from modelwire.errors import InvalidInput

if TYPE_CHECKING:
    import psycopg as psycopg_types

__all__ = ["Cursor", "Database", "check_database_url"]

#: Both servers take a lock with this key around writes that must not overlap a sweep
#: of the image files (see `Database.begin_write`).
_WRITE_LOCK_KEY = 0x6D6F64656C77


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


def check_database_url(url: str) -> str:
    if not url.startswith(("postgresql://", "postgres://")):
        raise InvalidInput(
            "database_url must be a PostgreSQL URL (postgresql://user:password@host:5432/db);"
            " leave it out for SQLite in the data directory",
            field="database_url",
        )
    return url


class Database:
    """One connection, in autocommit mode unless a transaction is begun. Not
    thread-safe: each user keeps its own, on one thread."""

    def __init__(self, sqlite_path: Path, url: str | None = None) -> None:
        self.url = url
        self.postgres = url is not None
        self.sqlite_path = sqlite_path
        if url is not None:
            psycopg = optional("psycopg", "postgres")  # only PostgreSQL users need it

            self._pg: psycopg_types.Connection[Any] = psycopg.connect(
                check_database_url(url), autocommit=True
            )
            self.integrity_errors: tuple[type[Exception], ...] = (psycopg.IntegrityError,)
        else:
            self._sqlite = sqlite3.connect(
                sqlite_path, isolation_level=None, check_same_thread=False, timeout=10
            )
            self._sqlite.execute("PRAGMA busy_timeout=10000")
            _switch_to_wal(self._sqlite)
            for pragma in ("synchronous=FULL", "foreign_keys=ON"):
                self._sqlite.execute(f"PRAGMA {pragma}")
            self.integrity_errors = (sqlite3.IntegrityError,)

    def execute(self, sql: str, parameters: Sequence[object] = ()) -> Cursor:
        if self.postgres:
            return self._pg.execute(sql.replace("?", "%s"), parameters)
        return self._sqlite.execute(sql, parameters)

    def create_schema(self, schema: str) -> None:
        """Run `;`-separated CREATE ... IF NOT EXISTS statements. Column types are written
        as both understand them (DOUBLE PRECISION, BIGINT, TEXT)."""
        if self.postgres:
            # Servers starting at once would race to create the same tables.
            with self._pg.transaction():
                self._pg.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK_KEY + 1,))
                for statement in filter(str.strip, schema.split(";")):
                    self._pg.execute(statement)
        else:
            self._sqlite.executescript(schema)

    def ensure_column(self, table: str, column: str, definition: str) -> None:
        """Add `column` to `table` (made by an older version) unless it has it; the
        definition gives rows already there a value (`... NOT NULL DEFAULT ...`)."""
        if self.postgres:
            with self._pg.transaction():
                self._pg.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK_KEY + 1,))
                self._pg.execute(
                    f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {definition}"
                )
            return
        names = {row[1] for row in self._sqlite.execute(f"PRAGMA table_info({table})")}
        if column not in names:
            try:
                self._sqlite.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
            except sqlite3.OperationalError as error:
                # Another process (a worker of `serve --workers`) added it meanwhile.
                if "duplicate column" not in str(error):
                    raise
            self._sqlite.commit()

    def begin_write(self, *, exclusive: bool = False) -> None:
        """Begin a transaction that writes. SQLite takes its one write lock either way.
        PostgreSQL takes the write lock shared (writers run side by side) or, with
        `exclusive`, alone: a sweep of the image files waits for the writers, who may
        have written files their uncommitted rows refer to."""
        if not self.postgres:
            self._sqlite.execute("BEGIN IMMEDIATE")
            return
        self._pg.execute("BEGIN")
        lock = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        self._pg.execute(f"SELECT {lock}(%s)", (_WRITE_LOCK_KEY,))

    def commit(self) -> None:
        self.execute("COMMIT")

    def rollback(self) -> None:
        """End the transaction under way, if any, undoing it (after a failed `begin`
        too, which may have left one half-begun)."""
        if self.postgres:
            self._pg.rollback()  # a no-op outside a transaction
        elif self._sqlite.in_transaction:
            self._sqlite.execute("ROLLBACK")

    def integrity_check(self) -> str:
        """ "ok", or what is wrong: SQLite's own page check; for PostgreSQL (which checks
        its pages itself), examples whose dataset is gone."""
        if not self.postgres:
            (result,) = self._sqlite.execute("PRAGMA integrity_check").fetchone()
            return str(result)
        (orphans,) = self.execute(
            "SELECT COUNT(*) FROM examples e LEFT JOIN datasets d ON d.name = e.dataset "
            "WHERE d.name IS NULL"
        ).fetchone()
        return "ok" if orphans == 0 else f"{orphans} examples of datasets that do not exist"

    def close(self) -> None:
        if self.postgres:
            self._pg.close()
        else:
            self._sqlite.close()


def _switch_to_wal(connection: sqlite3.Connection, within_s: float = 10.0) -> None:
    """WAL mode, retried while another process holds the lock: SQLite refuses the switch
    at once, without its busy handler, when servers sharing the file start together
    (`serve --workers`)."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)  # a retry interval, not synchronisation
