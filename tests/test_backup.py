"""`hookstream backup` and `restore` (SPEC §12): a consistent copy of a SQLite log taken while it is written."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.commands import hookstream
from tests.server import Api, Server


def sqlite_url(directory: Path) -> str:
    return f"sqlite:///{directory / 'hookstream.db'}"


def a_log_with_events(start: Callable[..., Server], directory: Path, count: int = 3) -> tuple[Server, Api, str]:
    """A server on a SQLite log in `directory` holding `count` events of one webhook."""
    directory.mkdir(parents=True, exist_ok=True)
    server = start(directory=directory, database_url=sqlite_url(directory))
    api = Api(server)
    account_id = api.create_account()
    webhook_id = api.create_webhook(account_id)["webhook_id"]
    if count:
        api.ingest(account_id, *[{"type": "message_received", "data": {"n": n}} for n in range(count)])
    return server, api, webhook_id


def test_a_backup_during_ingest_restores_every_event_acknowledged_before_it_with_the_same_epoch(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    server, api, webhook_id = a_log_with_events(start_server, tmp_path / "live", count=0)
    account_id = api.http.get(f"/v2/webhooks/{webhook_id}", headers=api.auth).json()["data"]["account_id"]
    epoch = api.poll(webhook_id)["epoch"]
    acknowledged: list[dict[str, object]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def ingest() -> None:
        with contextlib.closing(Api(server, api.api_key)) as producer:
            batch = 0
            while not stop.is_set() and batch < 5000:
                tag = f"{threading.get_ident()}-{batch}"
                events = [{"id": f"{tag}-{n}", "type": "message_received", "data": {"n": n}} for n in range(20)]
                answer = producer.ingest(account_id, *events)
                with lock:
                    acknowledged.extend(
                        {"id": a["id"], "seq": a["seq"], "data": e["data"]} for a, e in zip(answer, events, strict=True)
                    )
                batch += 1

    producers = [threading.Thread(target=ingest) for _ in range(2)]
    for thread in producers:
        thread.start()
    try:
        while len(acknowledged) < 400:
            time.sleep(0.01)
        with lock:
            before = list(acknowledged)
        result = hookstream("backup", str(tmp_path / "backup.db"), env={"DATABASE_URL": server.database_url})
        with lock:
            during = len(acknowledged) - len(before)
    finally:
        stop.set()
        for thread in producers:
            thread.join(30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"hookstream backup: wrote {tmp_path / 'backup.db'}: ")
    assert f"epoch {epoch}" in result.stdout
    assert during > 0, "ingest went on while the backup ran"
    server.stop()
    api.close()

    restored_dir = tmp_path / "restored"
    result = hookstream("restore", str(tmp_path / "backup.db"), env={"DATABASE_URL": sqlite_url(restored_dir)})
    assert result.returncode == 0, result.stderr
    restored = start_server(directory=restored_dir, database_url=sqlite_url(restored_dir))
    with contextlib.closing(Api(restored, api.api_key)) as reader:
        assert reader.poll(webhook_id)["epoch"] == epoch
        feed = reader.feed(webhook_id)
    by_id = {event["id"]: event for event in feed}
    # Every event acknowledged before the backup began is there, at its seq, with its data.
    missing = [event for event in before if event["id"] not in by_id]
    assert missing == []
    assert all(by_id[str(event["id"])]["seq"] == event["seq"] for event in before)
    assert all(by_id[str(event["id"])]["data"] == event["data"] for event in before)
    # And the copy is one moment of the log: a prefix of seqs with no hole.
    assert [event["seq"] for event in feed] == list(range(1, len(feed) + 1))


def test_restore_refuses_a_database_holding_a_log_without_force_and_replaces_it_and_its_wal_with_force(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    source, source_api, webhook_id = a_log_with_events(start_server, tmp_path / "source", count=3)
    backup = tmp_path / "backup.db"
    assert hookstream("backup", str(backup), env={"DATABASE_URL": source.database_url}).returncode == 0
    epoch = source_api.poll(webhook_id)["epoch"]
    source_api.close()

    # The target: another log whose last commits are still in its WAL (the server was killed).
    target, target_api, _ = a_log_with_events(start_server, tmp_path / "target", count=50)
    target_api.close()
    target.kill()
    assert Path(f"{target.database_url.removeprefix('sqlite:///')}-wal").stat().st_size > 0

    refused = hookstream("restore", str(backup), env={"DATABASE_URL": target.database_url})
    assert refused.returncode != 0
    assert refused.stderr.strip().endswith("already holds a log; pass --force to replace it with the backup")
    assert len(refused.stderr.strip().splitlines()) == 1

    forced = hookstream("restore", str(backup), "--force", env={"DATABASE_URL": target.database_url})
    assert forced.returncode == 0, forced.stderr
    assert f"3 events up to seq 3, epoch {epoch}" in forced.stdout
    assert not Path(f"{target.database_url.removeprefix('sqlite:///')}-wal").exists()
    again = start_server(directory=tmp_path / "target", database_url=target.database_url)
    with contextlib.closing(Api(again, source_api.api_key)) as api:
        assert api.poll(webhook_id)["epoch"] == epoch
        assert [event["data"] for event in api.feed(webhook_id)] == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_restore_refuses_while_a_server_uses_the_database(start_server: Callable[..., Server], tmp_path: Path) -> None:
    server, api, _ = a_log_with_events(start_server, tmp_path / "live")
    api.close()
    backup = tmp_path / "backup.db"
    assert hookstream("backup", str(backup), env={"DATABASE_URL": server.database_url}).returncode == 0
    result = hookstream("restore", str(backup), "--force", env={"DATABASE_URL": server.database_url})
    assert result.returncode != 0
    assert "is in use: stop every hookstream process using it" in result.stderr


def test_restore_onto_the_empty_log_a_release_phase_made_needs_no_force(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    source, api, _ = a_log_with_events(start_server, tmp_path / "source")
    api.close()
    backup = tmp_path / "backup.db"
    assert hookstream("backup", str(backup), env={"DATABASE_URL": source.database_url}).returncode == 0
    fresh = {"DATABASE_URL": sqlite_url(tmp_path / "fresh")}
    assert hookstream("migrate", env=fresh).returncode == 0
    result = hookstream("restore", str(backup), env=fresh)
    assert result.returncode == 0, result.stderr
    assert "3 events up to seq 3" in result.stdout


@pytest.mark.parametrize(
    ("where", "says"),
    [
        ("missing-dir/backup.db", "cannot write {path}: No such file or directory"),
        (".", "cannot write {path}: it is a directory"),
        ("live/hookstream.db", "{path} is the live database itself; choose another path"),
    ],
)
def test_a_backup_that_cannot_be_written_says_why_in_one_line(
    start_server: Callable[..., Server], tmp_path: Path, where: str, says: str
) -> None:
    server, api, _ = a_log_with_events(start_server, tmp_path / "live")
    api.close()
    path = (tmp_path / where).resolve()
    result = hookstream("backup", str(path), env={"DATABASE_URL": server.database_url})
    assert result.returncode != 0
    assert result.stderr == f"hookstream backup: {says.format(path=path)}\n"


def test_backup_of_a_missing_database_and_restore_of_a_file_that_is_no_backup_are_refused(tmp_path: Path) -> None:
    env = {"DATABASE_URL": sqlite_url(tmp_path / "none")}
    missing = hookstream("backup", str(tmp_path / "backup.db"), env=env)
    assert missing.returncode != 0 and "there is no database at" in missing.stderr
    (tmp_path / "notes.txt").write_text("not a database, just text long enough to fill a header page" * 20)
    bogus = hookstream("restore", str(tmp_path / "notes.txt"), env=env)
    assert bogus.returncode != 0
    assert bogus.stderr.startswith(f"hookstream restore: {tmp_path / 'notes.txt'} is not a hookstream database")
    assert not (tmp_path / "none" / "hookstream.db").exists()


@pytest.mark.parametrize("command", ["backup", "restore"])
def test_on_postgresql_both_commands_say_to_use_pg_dump_and_pg_restore(command: str, tmp_path: Path) -> None:
    result = hookstream(command, str(tmp_path / "x.dump"), env={"DATABASE_URL": "postgresql://u@127.0.0.1/db"})
    assert result.returncode != 0
    assert result.stderr.startswith(f"hookstream {command}: DATABASE_URL is PostgreSQL")
    assert "pg_dump" in result.stderr and "pg_restore" in result.stderr
    assert not (tmp_path / "x.dump").exists()
