"""`calbridge serve --workers 2` (two processes sharing only the database):
every change reaches the webhook receiver once and in order, whichever
worker took the write, and a long poll on either worker answers for writes
made through the other (PostgreSQL: NOTIFY, with a 10 s poll that would be
far too slow; SQLite: the 100 ms poll)."""

from __future__ import annotations

import json
import threading
import time

import tests.test_workers as workers_test
from tests.server import run_cli, running_server
from tests.webhooks.conftest import ThreadedReceiver


def test_two_server_processes_deliver_each_change_once_in_order(db_url: str) -> None:
    call = workers_test.request
    run_cli(db_url, "db", "upgrade")
    run_cli(db_url, "company", "create", "acme")
    key = json.loads(run_cli(db_url, "apikey", "create", "--company", "acme", "--json")
                     .stdout)["key"]
    poll_ms = "100" if db_url.startswith("sqlite") else "10000"
    receiver_thread = ThreadedReceiver()
    receiver_thread.start()
    receiver = receiver_thread.receiver
    try:
        with running_server(db_url, workers=2, CALBRIDGE_CHANGES_POLL_MS=poll_ms,
                            CALBRIDGE_WEBHOOKS_ALLOW_NETWORKS="127.0.0.1/32",
                            CALBRIDGE_WEBHOOKS_RETRY_BASE_SECONDS="0.05") as base:
            ep = call(f"{base}/api/v1/webhooks", "POST",
                      {"url": receiver.url, "event_types": ["staff.created"]}, key)
            receiver.secrets.append(ep["secret"])
            cursor = call(f"{base}/api/v1/changes", key=key)["next_cursor"]
            followed: list[tuple[str, float]] = []

            def follow() -> None:
                nonlocal cursor
                while len(followed) < 12:
                    page = call(f"{base}/api/v1/changes?wait=20&after={cursor}", key=key)
                    followed.extend((e["type"], time.monotonic()) for e in page["items"])
                    cursor = page["next_cursor"]

            follower = threading.Thread(target=follow)
            follower.start()
            written: list[float] = []
            workers = set()
            for n in range(12):
                workers.add(call(f"{base}/healthz")["worker"])
                call(f"{base}/api/v1/staff", "POST", {"email": f"s{n}@acme.test",
                                                      "name": f"S {n}"}, key)
                written.append(time.monotonic())
                time.sleep(0.05)
            follower.join(30)
            assert not follower.is_alive()
            receiver_thread.wait_for(lambda: len(receiver.got) >= 12)
            time.sleep(0.3)  # nothing more (no duplicates) arrives
        assert len(workers) == 2
        assert [r.payload["data"]["data"]["after"]["email"] for r in receiver.got] == [
            f"s{n}@acme.test" for n in range(12)]
        assert receiver.bad_signatures == 0
        assert [t for t, _ in followed] == ["staff.created"] * 12
        # Each entry reached the long poll promptly, whichever process wrote it.
        lags = [seen - wrote for (_, seen), wrote in zip(followed, written, strict=True)]
        assert max(lags) < 2.0, lags
    finally:
        receiver_thread.close()
