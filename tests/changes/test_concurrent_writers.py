"""No change-feed entry is ever skipped, even with many writers committing
concurrently on PostgreSQL (and on SQLite): a reader following the feed by
cursor while they run ends up with exactly the set of committed entries,
in order, each once."""

from __future__ import annotations

import random
import threading
import time

from sqlalchemy import select

from bridge.changes import service
from bridge.config import Settings
from bridge.db import repo
from bridge.db.engine import Database
from bridge.db.models import ChangeEntry
from tests.conftest import make_tenant

WRITERS = 8
PER_WRITER = 30


class Rollback(Exception):
    pass


def test_reader_never_skips_an_entry_under_concurrent_writers(settings: Settings) -> None:
    # SQLite's busy handler is not fair: with 8 writers always queued, one can
    # lose the lock for longer than the default 10 s on a loaded machine. This
    # test is about ordering, not lock fairness, so it waits longer.
    settings = settings.replace(database={"busy_timeout_ms": 120_000})
    db = Database(settings.database)
    try:
        run_writers_and_reader(db, settings)
    finally:
        db.sync_engine.dispose()


def run_writers_and_reader(db: Database, settings: Settings) -> None:
    tenant = make_tenant(db, settings, "acme")
    secret = settings.secret()
    committed: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []
    done = threading.Event()

    def writer(n: int) -> None:
        rng = random.Random(n)
        try:
            for i in range(PER_WRITER):
                try:
                    with db.sync_session(write=True) as s:
                        group = repo.create_group(s, tenant.company_id,
                                                  {"slug": f"g{n}-{i}", "name": f"G {n} {i}"},
                                                  repo.Actor("api", f"writer-{n}"))
                        seq = repo.company_version(s, tenant.company_id)
                        # Keep the transaction open a little after taking the number,
                        # so commits would overtake each other if nothing held them.
                        time.sleep(rng.uniform(0, 0.004))
                        if rng.random() < 0.1:
                            raise Rollback
                        assert group.id
                    with lock:
                        committed.append(seq)
                except Rollback:
                    pass
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)

    read: list[int] = []

    def reader() -> None:
        after = 0
        try:
            while True:
                finished = done.is_set()
                with db.sync_session() as s:
                    page = service.read_changes(s, tenant.company_id, after, 7, secret)
                read.extend(e["seq"] for e in page.entries)
                after = page.last_seq
                if finished and not page.entries:
                    return
                if not page.entries:
                    # a follower waits a moment when it is current (a spinning
                    # thread would starve the writers of the GIL, not test them)
                    time.sleep(0.001)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    follower = threading.Thread(target=reader)
    follower.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    follower.join(timeout=60)
    assert not errors, errors
    with db.sync_session() as s:
        in_db = list(s.execute(select(ChangeEntry.seq).where(
            ChangeEntry.company_id == tenant.company_id).order_by(ChangeEntry.seq)).scalars())
    # Rolled-back writers gave their number back: the log has no gaps.
    assert in_db == list(range(1, len(in_db) + 1))
    assert sorted(committed) == in_db[2:]  # after company.created and api_key.created
    assert len(committed) > WRITERS * PER_WRITER * 0.8
    # The follower saw every committed entry, in order, once.
    assert read == in_db
