"""The durable, bounded on-disk buffer every reading passes through before InfluxDB.

SQLite in WAL mode: an append is one small transaction, a batch is read oldest-first and
deleted only when InfluxDB has acknowledged it (`ack`). What survives what:

- The agent crashing or `kill -9`: nothing committed is lost in either sync mode; the
  committed transactions are in the WAL file (in the OS page cache at worst).
- A power cut with `sync = full`: nothing committed is lost; each commit waits for fsync,
  which is slower and wears an SD card faster.
- A power cut with `sync = normal` (default): commits since the last sync are lost, at most the
  readings of one `sync_interval` (the loop calls `sync()` that often; a checkpoint fsyncs the
  WAL). The database itself stays consistent either way.

When full, the oldest points go first and are counted as dropped. A file SQLite cannot read is
moved aside (`<name>.corrupt-<time>`) and a fresh buffer started: the agent never refuses to
start because of its buffer.

Lifetime counters (`readings`, `written`, `dropped`, `rejected`) live in the same database and
change in the same transactions as the points, so they stay true across restarts and crashes.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS points (id INTEGER PRIMARY KEY AUTOINCREMENT, line TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
COUNTERS = ("readings", "appended", "written", "dropped", "rejected")
_CHUNK = 500  # stay well under SQLite's bound-parameter limit


class BufferClosed(RuntimeError):
    """Used after close() (a writer thread outliving the shutdown deadline)."""


@dataclass(frozen=True)
class Entry:
    id: int
    line: str


class Buffer:
    """Thread-safe: the reading loop appends while the writer thread peeks and acks."""

    def __init__(self, path: Path, max_points: int = 500_000, sync: str = "normal") -> None:
        if sync not in ("normal", "full"):
            raise ValueError("sync must be 'normal' or 'full'")
        self.path = Path(path)
        self.max_points = max_points
        self.sync_mode = sync
        self.moved_aside: Path | None = None
        self._lock = threading.RLock()
        self._closed = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = self._open()
        except sqlite3.DatabaseError as exc:
            self._conn = self._start_fresh(exc)

    # --- opening and recovery -----------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.sync_mode.upper()}")
            conn.execute("PRAGMA wal_autocheckpoint=1000")
            result = conn.execute("PRAGMA quick_check").fetchone()
            if result is None or result[0] != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {result[0] if result else 'nothing'}")
            conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError:
            conn.close()
            raise
        return conn

    def _start_fresh(self, exc: Exception) -> sqlite3.Connection:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists():
                src.replace(Path(str(aside) + suffix))
        self.moved_aside = aside
        log.error(
            "buffer %s is unreadable (%s); moved it aside to %s and started an empty one",
            self.path,
            exc,
            aside,
        )
        return self._open()

    def _run(self, fn):
        """Run fn(conn) under the lock; if the file turns out corrupt mid-run, recover once."""
        with self._lock:
            if self._closed:
                raise BufferClosed(f"buffer {self.path} is closed")
            try:
                return fn(self._conn)
            except sqlite3.DatabaseError as exc:
                # Only a plain DatabaseError means a damaged file ("malformed", "not a
                # database"); its subclasses (locked, disk full, misuse) are not corruption.
                if type(exc) is not sqlite3.DatabaseError:
                    raise
                self._conn.close()
                self._conn = self._start_fresh(exc)
                return fn(self._conn)

    # --- points -------------------------------------------------------------------------

    def append(self, lines: str | Sequence[str], counter: str | None = None) -> int:
        """Store lines; return how many old points were dropped to stay within the bound.

        `counter` names a lifetime counter to increase by len(lines) in the same transaction
        (the loop counts `readings` so a test can compare it with what reached InfluxDB).
        """
        if isinstance(lines, str):
            lines = [lines]
        if not lines:
            return 0

        def op(conn: sqlite3.Connection) -> int:
            with _transaction(conn):
                conn.executemany("INSERT INTO points(line) VALUES (?)", [(x,) for x in lines])
                _bump(conn, "appended", len(lines))
                if counter:
                    _bump(conn, counter, len(lines))
                excess = _upper_bound(conn) - self.max_points
                if excess > 0:  # the cheap bound says maybe: count exactly
                    excess = _count(conn) - self.max_points
                if excess > 0:
                    conn.execute(
                        "DELETE FROM points WHERE id IN "
                        "(SELECT id FROM points ORDER BY id LIMIT ?)",
                        (excess,),
                    )
                    _bump(conn, "dropped", excess)
                return max(excess, 0)

        try:
            dropped = self._run(op)
        except sqlite3.OperationalError as exc:
            if not _is_full(exc):
                raise
            dropped = self._append_when_full(op, len(lines), exc)
        if dropped:
            log.warning("buffer full (%d points): dropped the %d oldest", self.max_points, dropped)
        return dropped

    def _append_when_full(self, op, n: int, exc: sqlite3.Error) -> int:
        """The disk is full: drop the oldest points until the newest fit (newest data wins).

        Freed pages are reused by the next insert, and a WAL restart lets the next commits
        reuse the WAL file's existing space, so this works without any free byte on disk.
        """
        with self._lock:
            log.error(
                "buffer %s: disk full (%s); dropping the oldest points to store the newest",
                self.path,
                exc,
            )
            room, dropped = max(n, 16), 0
            for _ in range(8):
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
                try:
                    with _transaction(self._conn):
                        cur = self._conn.execute(
                            "DELETE FROM points WHERE id IN "
                            "(SELECT id FROM points ORDER BY id LIMIT ?)",
                            (room,),
                        )
                        _bump(self._conn, "dropped", cur.rowcount)
                    dropped += cur.rowcount
                except sqlite3.OperationalError as again:
                    if not _is_full(again):
                        raise
                try:
                    return dropped + op(self._conn)
                except sqlite3.OperationalError as again:
                    if not _is_full(again) or _count(self._conn) == 0:
                        raise
                room *= 4
            raise exc

    def peek(self, limit: int) -> list[Entry]:
        """The oldest `limit` points, still stored until acked."""
        rows = self._run(
            lambda c: c.execute(
                "SELECT id, line FROM points ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        )
        return [Entry(i, line) for i, line in rows]

    def ack(self, ids: Iterable[int]) -> int:
        """Delete points InfluxDB accepted; counted as written."""
        return self._delete(list(ids), "written")

    def reject(self, ids: Iterable[int]) -> int:
        """Delete points InfluxDB refused as malformed; counted as rejected."""
        return self._delete(list(ids), "rejected")

    def _delete(self, ids: list[int], counter: str) -> int:
        if not ids:
            return 0

        def op(conn: sqlite3.Connection) -> int:
            removed = 0
            with _transaction(conn):
                for start in range(0, len(ids), _CHUNK):
                    chunk = ids[start : start + _CHUNK]
                    marks = ",".join("?" * len(chunk))
                    cur = conn.execute(f"DELETE FROM points WHERE id IN ({marks})", chunk)  # noqa: S608
                    removed += cur.rowcount
                _bump(conn, counter, removed)
            return removed

        return self._run(op)

    def depth(self) -> int:
        return self._run(_count)

    def counters(self) -> dict[str, int]:
        rows = dict(self._run(lambda c: c.execute("SELECT name, value FROM counters").fetchall()))
        return {name: int(rows.get(name, 0)) for name in COUNTERS}

    # --- durability ---------------------------------------------------------------------

    def sync(self) -> None:
        """Make everything committed so far survive a power cut (a WAL checkpoint fsyncs)."""
        self._run(lambda c: c.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone())

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                log.warning("buffer checkpoint at close failed: %s", exc)
            self._conn.close()

    def __enter__(self) -> Buffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on error (autocommit connection)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.conn.execute("COMMIT")
                return
            except sqlite3.Error:
                self._rollback()  # a failed COMMIT (disk full) leaves the transaction open
                raise
        self._rollback()

    def _rollback(self) -> None:
        if self.conn.in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error as exc:
                log.warning("buffer rollback failed: %s", exc)


def _is_full(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == 13 or "disk is full" in str(exc)


def _count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM points").fetchone()[0])


def _upper_bound(conn: sqlite3.Connection) -> int:
    """An O(1) upper bound on the number of points (ids grow; deletes leave gaps)."""
    low, high = conn.execute("SELECT min(id), max(id) FROM points").fetchone()
    return 0 if low is None else high - low + 1


def _bump(conn: sqlite3.Connection, name: str, by: int) -> None:
    conn.execute(
        "INSERT INTO counters(name, value) VALUES (?, ?) "
        "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
        (name, by),
    )


def read_counters(path: Path) -> tuple[int, dict[str, int]] | None:
    """Depth and counters of a buffer file, read-only (for `iot-agent status`)."""
    if not Path(path).exists():
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        depth = _count(conn)
        rows = dict(conn.execute("SELECT name, value FROM counters").fetchall())
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    return depth, {name: int(rows.get(name, 0)) for name in COUNTERS}
