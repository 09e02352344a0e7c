"""The durable buffer: what survives reopening, the bound, corruption and ack semantics."""

from __future__ import annotations

import logging
import sqlite3

import pytest

from agent.buffer import PAGE_SIZE, Buffer, BufferClosed, read_counters


def lines(n: int, start: int = 0) -> list[str]:
    return [f"m v={i} {i}" for i in range(start, start + n)]


def test_survives_reopen_and_keeps_order_and_counters(tmp_path):
    path = tmp_path / "b.sqlite"
    with Buffer(path) as buf:
        buf.append(lines(5), counter="readings")
        batch = buf.peek(2)
        assert [e.line for e in batch] == lines(2)
        buf.ack(e.id for e in batch)
    with Buffer(path) as buf:
        assert buf.depth() == 3
        assert [e.line for e in buf.peek(10)] == lines(3, start=2)
        assert buf.counters() == {
            "readings": 5, "appended": 5, "written": 2, "dropped": 0, "rejected": 0
        }  # fmt: skip


def test_unacked_points_stay_until_acked(tmp_path):
    with Buffer(tmp_path / "b.sqlite") as buf:
        buf.append(lines(3))
        first = buf.peek(3)
        assert buf.peek(3) == first  # peeking twice sends the same points again
        assert buf.ack([first[1].id]) == 1
        assert [e.line for e in buf.peek(3)] == [lines(3)[0], lines(3)[2]]
        assert buf.ack([first[1].id]) == 0  # acking twice does not double-count
        assert buf.counters()["written"] == 1


def test_reject_counts_separately(tmp_path):
    with Buffer(tmp_path / "b.sqlite") as buf:
        buf.append(lines(2))
        buf.reject([buf.peek(1)[0].id])
        assert buf.counters()["rejected"] == 1 and buf.counters()["written"] == 0
        assert buf.depth() == 1


def test_full_buffer_drops_oldest_and_counts(tmp_path, caplog):
    with Buffer(tmp_path / "b.sqlite", max_points=10) as buf:
        buf.append(lines(8))
        with caplog.at_level(logging.WARNING):
            assert buf.append(lines(5, start=8)) == 3
        assert "dropped the 3 oldest" in caplog.text
        assert buf.depth() == 10
        assert [e.line for e in buf.peek(100)] == lines(10, start=3)
        assert buf.counters()["dropped"] == 3


def test_bound_is_exact_with_gaps_from_acks(tmp_path):
    with Buffer(tmp_path / "b.sqlite", max_points=4) as buf:
        buf.append(lines(4))
        entries = buf.peek(4)
        buf.ack([entries[1].id, entries[2].id])  # gap in the middle
        assert buf.append(lines(2, start=4)) == 0
        assert buf.depth() == 4
        assert buf.append(lines(1, start=6)) == 1


def test_many_ids_ack_in_chunks(tmp_path):
    with Buffer(tmp_path / "b.sqlite") as buf:
        buf.append(lines(1500))
        assert buf.ack(e.id for e in buf.peek(1500)) == 1500
        assert buf.depth() == 0


def test_batches_are_id_ranges_read_and_acked_whole(tmp_path):
    with Buffer(tmp_path / "b.sqlite") as buf:
        assert buf.peek_batch(10) is None
        buf.append(lines(10))
        first = buf.peek_batch(4)
        assert (first.count, first.last - first.first) == (4, 3)
        assert set(first.lines) == set(lines(4))
        second = buf.peek_batch(4, after=first.last)  # the next range, disjoint
        assert set(second.lines) == set(lines(4, start=4)) and second.first == first.last + 1
        buf.append(lines(2, start=10))  # appended later: never inside a range handed out
        assert buf.ack_batch(second) == 4 and buf.ack_batch(second) == 0  # twice: counted once
        assert buf.ack_batch(first) == 4
        assert set(buf.peek_batch(100).lines) == set(lines(4, start=8))
        assert buf.counters()["written"] == 8 and buf.depth() == 4


def test_a_batch_splits_into_halves_of_what_is_still_stored(tmp_path):
    with Buffer(tmp_path / "b.sqlite") as buf:
        buf.append(lines(7))
        batch = buf.peek_batch(7)
        buf.ack([buf.peek(1)[0].id])  # the oldest was delivered meanwhile
        low, high = buf.split(batch)
        assert (low.count, high.count) == (3, 3) and low.last < high.first
        assert set(low.lines + high.lines) == set(lines(6, start=1))
        assert buf.reject_batch(low) == 3 and buf.counters()["rejected"] == 3
        (single,) = [b for b in buf.split(high) if b.count == 1][:1]
        assert buf.split(single) is None  # one point cannot be split


def test_acks_do_not_zero_freed_pages(tmp_path):
    with Buffer(tmp_path / "b.sqlite") as buf:
        # Debian's SQLite defaults to secure delete, which rewrites every freed page
        assert buf._conn.execute("PRAGMA secure_delete").fetchone()[0] == 0


@pytest.mark.parametrize("sync", ["normal", "full"])
def test_sync_modes(tmp_path, sync):
    path = tmp_path / "b.sqlite"
    with Buffer(path, sync=sync) as buf:
        buf.append(lines(3))
        buf.sync()
        mode = buf._conn.execute("PRAGMA synchronous").fetchone()[0]
        assert mode == {"normal": 1, "full": 2}[sync]
        assert buf._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_committed_points_survive_an_unclean_exit(tmp_path):
    """No close(), no checkpoint: what a kill -9 leaves behind (WAL not merged)."""
    path = tmp_path / "b.sqlite"
    buf = Buffer(path)
    buf.append(lines(4), counter="readings")
    # Simulate the process vanishing: copy the files as they are on disk right now.
    copy = tmp_path / "copy.sqlite"
    for suffix in ("", "-wal"):
        src = path.with_name(path.name + suffix)
        if src.exists():
            copy.with_name(copy.name + suffix).write_bytes(src.read_bytes())
    with Buffer(copy) as again:
        assert again.depth() == 4
        assert again.counters()["readings"] == 4
    buf.close()


def test_corrupt_file_is_moved_aside_and_a_fresh_buffer_started(tmp_path, caplog):
    path = tmp_path / "b.sqlite"
    path.write_bytes(b"this is not a database" * 200)
    with caplog.at_level(logging.ERROR), Buffer(path) as buf:
        assert buf.depth() == 0
        buf.append(lines(1))
        assert buf.moved_aside is not None and buf.moved_aside.exists()
        assert buf.moved_aside.read_bytes().startswith(b"this is not a database")
    assert "moved it aside" in caplog.text


def test_damaged_pages_are_detected(tmp_path):
    path = tmp_path / "b.sqlite"
    with Buffer(path) as buf:
        buf.append(lines(2000))
    data = bytearray(path.read_bytes())
    page = PAGE_SIZE
    for i in range(2 * page, min(len(data), 6 * page)):
        data[i] = 0xA5  # scribble over b-tree pages
    path.write_bytes(bytes(data))
    with Buffer(path) as buf:
        assert buf.moved_aside is not None
        assert buf.depth() == 0


def test_use_after_close_is_a_clear_error_not_a_recovery(tmp_path):
    path = tmp_path / "b.sqlite"
    buf = Buffer(path)
    buf.append(lines(2))
    buf.close()
    with pytest.raises(BufferClosed):
        buf.ack([1])
    with Buffer(path) as again:  # nothing was moved aside
        assert again.moved_aside is None and again.depth() == 2


def test_read_counters_is_read_only(tmp_path):
    path = tmp_path / "b.sqlite"
    assert read_counters(path) is None
    with Buffer(path) as buf:
        buf.append(lines(3), counter="readings")
        depth, counters = read_counters(path)
        assert depth == 3 and counters["readings"] == 3
    with pytest.raises(sqlite3.OperationalError):
        sqlite3.connect(f"file:{path}?mode=ro", uri=True).execute("DELETE FROM points")


def test_full_disk_drops_oldest_to_keep_the_newest(tmp_path, caplog):
    """SQLite's max_page_count gives the same SQLITE_FULL a full file system does."""
    with Buffer(tmp_path / "b.sqlite") as buf:
        buf.append(lines(10))
        pages = buf._conn.execute("PRAGMA page_count").fetchone()[0]
        buf._conn.execute(f"PRAGMA max_page_count = {pages + 4}")
        big = "x" * 3000
        n = 0
        with caplog.at_level(logging.ERROR):
            for i in range(60):  # far more than fits
                buf.append(f'm s="{big}" {100 + i}', counter="readings")
                n += 1
        assert "disk full" in caplog.text and "database or disk is full" in caplog.text
        newest = buf.peek(10**6)[-1].line
        assert newest.endswith(" 159")  # the newest reading is always kept
        c = buf.counters()
        assert c["readings"] == 60 and c["dropped"] > 0
        assert c["appended"] == buf.depth() + c["dropped"]  # every point accounted for
        buf._conn.execute("PRAGMA max_page_count = 1073741823")
        buf.append(lines(3, start=500))  # back to normal once space returns


def _append_statements(buf: Buffer) -> list[str]:
    """The SQL one single-reading append runs (as Agent.read_once does)."""
    seen: list[str] = []
    buf._conn.set_trace_callback(seen.append)
    try:
        buf.append("m v=1 1", counter="readings")
    finally:
        buf._conn.set_trace_callback(None)
    return seen


def test_append_never_scans_the_points_table(tmp_path):
    """A full scan per append made appends cost O(depth) (73 ms at 500,000 buffered): check
    SQLite's own plan for every statement an append runs, which does not depend on timing."""
    with Buffer(tmp_path / "b.sqlite", max_points=10_000) as buf:
        buf.append(lines(1000))
        statements = _append_statements(buf)
        assert any("points" in s for s in statements)
        for sql in statements:
            plan = buf._conn.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
            details = [row[-1] for row in plan]
            assert not any(d.startswith("SCAN points") for d in details), (sql, details)


def test_append_work_does_not_grow_with_depth(tmp_path):
    """Count SQLite virtual-machine steps (deterministic, unlike time) of one append when the
    buffer holds 100 points and when it holds 20,000: they must be about the same."""

    def steps(buf: Buffer) -> int:
        n = [0]

        def tick() -> int:
            n[0] += 1
            return 0

        buf._conn.set_progress_handler(tick, 1)
        try:
            buf.append("m v=1 1", counter="readings")
        finally:
            buf._conn.set_progress_handler(None, 1)
        return n[0]

    with Buffer(tmp_path / "b.sqlite", max_points=100_000) as buf:
        buf.append(lines(100))
        shallow = steps(buf)
        buf.append(lines(20_000, 100))
        deep = steps(buf)
    assert deep < 2 * shallow + 50, (shallow, deep)


def _legacy_buffer(path, n: int) -> None:
    """A buffer as earlier versions made it: AUTOINCREMENT, WAL."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(
        "CREATE TABLE points (id INTEGER PRIMARY KEY AUTOINCREMENT, line TEXT NOT NULL);"
        "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);"
    )
    conn.executemany("INSERT INTO points(line) VALUES (?)", [(x,) for x in lines(n + 5)])
    conn.execute("DELETE FROM points WHERE id > ?", (n,))  # the highest ids were acked
    conn.execute("INSERT INTO counters VALUES ('appended', ?), ('written', 5)", (n + 5,))
    conn.close()


def test_new_buffer_has_no_autoincrement(tmp_path):
    with Buffer(tmp_path / "b.sqlite") as buf:
        buf.append(lines(3))
        conn = buf._conn
        assert conn.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE
        sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'points'").fetchone()[0]
        assert "AUTOINCREMENT" not in sql.upper()


def test_ids_are_never_reused_while_the_process_runs(tmp_path):
    """INTEGER PRIMARY KEY alone would hand out max+1 again after the highest row is deleted;
    an ack of a batch still in flight could then delete a newer, unsent point."""
    with Buffer(tmp_path / "b.sqlite") as buf:
        buf.append(lines(3))
        buf.ack(e.id for e in buf.peek(10))
        buf.append(lines(1, 3))
        (e,) = buf.peek(10)
        assert e.id == 4
        buf.reject([e.id])
        buf.append(lines(1, 4))
        assert buf.peek(10)[0].id == 5
    with Buffer(tmp_path / "b.sqlite") as buf:  # reopened: above the highest id in the file
        buf.append(lines(1, 5))
        assert [e.id for e in buf.peek(10)] == [5, 6]


def test_one_append_writes_two_pages_not_three(tmp_path):
    """SD-card wear: an append used to write three 4 KB WAL frames (points, sqlite_sequence,
    counters). Measured as WAL growth, which SQLite makes deterministic."""
    path = tmp_path / "b.sqlite"
    with Buffer(path) as buf:
        buf.append(lines(10))
        buf.sync()
        buf.append(lines(1, 10))  # the WAL restarts after a complete checkpoint
        wal = path.with_name("b.sqlite-wal")
        before = wal.stat().st_size
        for i in range(20):
            buf.append(lines(1, 11 + i), counter="readings")
        per_append = (wal.stat().st_size - before) / 20
    assert per_append <= 2 * (PAGE_SIZE + 24), per_append


def test_buffer_of_an_earlier_version_is_rebuilt_and_keeps_everything(tmp_path):
    path = tmp_path / "b.sqlite"
    _legacy_buffer(path, 7)
    with Buffer(path) as buf:
        sql = buf._conn.execute("SELECT sql FROM sqlite_master WHERE name='points'").fetchone()
        assert "AUTOINCREMENT" not in sql[0].upper()
        assert [e.line for e in buf.peek(100)] == lines(7)
        assert buf.counters()["appended"] == 12 and buf.counters()["written"] == 5
        buf.append(lines(1, 7))
        assert buf.peek(100)[-1].id == 8
        assert buf._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_deep_buffer_of_an_earlier_version_is_used_as_it_is(tmp_path, monkeypatch):
    import agent.buffer

    monkeypatch.setattr(agent.buffer, "MIGRATE_MAX_POINTS", 3)
    path = tmp_path / "b.sqlite"
    _legacy_buffer(path, 7)
    with Buffer(path) as buf:
        sql = buf._conn.execute("SELECT sql FROM sqlite_master WHERE name='points'").fetchone()
        assert "AUTOINCREMENT" in sql[0].upper()
        buf.append(lines(1, 7))
        assert buf.peek(100)[-1].id == 13  # above the acked ids AUTOINCREMENT remembered
        assert buf.depth() == 8
