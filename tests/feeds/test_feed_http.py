"""`GET/HEAD /feeds/<token>.ics` as calendar apps see it, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import logging
import time
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from yarl import URL

from bridge.app import create_app
from bridge.feeds import service
from bridge.keys import FEEDS
from tests.feeds.conftest import ADMIN, TODAY, Salon, at, by_uid, events, run, weekly_block
from tests.server import run_cli


async def fetch(client: TestClient[Any, Any], token: str, **headers: str) -> Any:
    """A GET like a calendar app's: no Accept-Encoding unless given."""
    return await client.get(f"/feeds/{token}.ics", headers=headers,
                            skip_auto_headers=("Accept-Encoding",))


@pytest.mark.parametrize("accept", [None, "*/*", "text/html", "application/json"])
async def test_feed_is_text_calendar_whatever_the_accept_header(
    client: TestClient[Any, Any], salon: Salon, accept: str | None
) -> None:
    await run(salon.book, "a", salon.anna, 1, 10)
    _, token = await run(salon.link, staff_id=salon.anna)
    resp = await fetch(client, token, **({"Accept": accept} if accept else {}))
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/calendar; charset=utf-8"
    assert "Content-Encoding" not in resp.headers
    assert len(events(await resp.read())) == 1


async def test_head_has_the_headers_and_no_body(client: TestClient[Any, Any], salon: Salon) -> None:
    await run(salon.book, "a", salon.anna, 1, 10)
    _, token = await run(salon.link, staff_id=salon.anna)
    get = await fetch(client, token)
    body = await get.read()
    head = await client.head(f"/feeds/{token}.ics", skip_auto_headers=("Accept-Encoding",))
    assert head.status == 200
    assert head.headers["ETag"] == get.headers["ETag"]
    assert head.headers["Content-Type"] == "text/calendar; charset=utf-8"
    assert int(head.headers["Content-Length"]) == len(body)
    assert await head.read() == b""


async def test_unchanged_feed_is_byte_identical_and_revalidates_with_304(
    client: TestClient[Any, Any], salon: Salon
) -> None:
    await run(salon.book, "a", salon.anna, 1, 10)
    await run(salon.book, "b", salon.anna, 2, 11)
    _, token = await run(salon.link, staff_id=salon.anna)
    first = await fetch(client, token)
    body = await first.read()
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    assert etag.startswith('"') and not etag.startswith("W/")
    again = await fetch(client, token)
    assert await again.read() == body
    assert again.headers["ETag"] == etag
    resp = await fetch(client, token, **{"If-None-Match": etag})
    assert resp.status == 304
    assert await resp.read() == b""
    assert resp.headers["ETag"] == etag
    resp = await fetch(client, token, **{"If-Modified-Since": modified})
    assert resp.status == 304
    resp = await fetch(client, token, **{"If-None-Match": '"something-else"',
                                         "If-Modified-Since": modified})
    assert resp.status == 200  # If-None-Match wins (RFC 9110 §13.2.2)
    await run(salon.update, "a", {"location": "Chair 5"})
    resp = await fetch(client, token, **{"If-None-Match": etag})
    assert resp.status == 200
    assert resp.headers["ETag"] != etag
    assert "Chair 5" in (await resp.read()).decode()


async def test_every_worker_renders_the_same_bytes(
    aiohttp_client: Any, salon: Salon
) -> None:
    await run(salon.book, "a", salon.anna, 1, 10)
    _, token = await run(salon.link, scope="company")
    one = await aiohttp_client(create_app(salon.settings))
    two = await aiohttp_client(create_app(salon.settings))
    a, b = await fetch(one, token), await fetch(two, token)
    assert await a.read() == await b.read()
    assert a.headers["ETag"] == b.headers["ETag"]
    assert a.headers["Last-Modified"] == b.headers["Last-Modified"]


async def test_gzip_only_when_asked(client: TestClient[Any, Any], salon: Salon) -> None:
    for day in range(1, 30):
        await run(salon.book, f"a{day}", salon.anna, day, 10)
    _, token = await run(salon.link, staff_id=salon.anna)
    plain = await client.get(f"/feeds/{token}.ics", headers={"Accept-Encoding": "identity"},
                             auto_decompress=False)
    assert "Content-Encoding" not in plain.headers
    body = await plain.read()
    zipped = await client.get(f"/feeds/{token}.ics", headers={"Accept-Encoding": "gzip, br"},
                              auto_decompress=False)
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(await zipped.read()) == body
    assert zipped.headers["ETag"] != plain.headers["ETag"]
    refused = await client.get(f"/feeds/{token}.ics", headers={"Accept-Encoding": "gzip;q=0"},
                               auto_decompress=False)
    assert "Content-Encoding" not in refused.headers
    resp = await client.get(f"/feeds/{token}.ics", headers={
        "Accept-Encoding": "gzip", "If-None-Match": zipped.headers["ETag"]})
    assert resp.status == 304


async def test_unknown_rotated_and_revoked_tokens_get_the_same_404(
    client: TestClient[Any, Any], salon: Salon
) -> None:
    feed_id, token = await run(salon.link, staff_id=salon.anna)
    revoked_id, revoked = await run(salon.link, staff_id=salon.ben)
    assert (await fetch(client, token)).status == 200
    assert (await fetch(client, revoked)).status == 200
    def rotate_one_revoke_other() -> str:
        with salon.db.sync_session(write=True) as s:
            link = service.rotate_feed(s, salon.tenant.company_id, feed_id,
                                       salon.settings.secret(), ADMIN)
            service.revoke_feed(s, salon.tenant.company_id, revoked_id, ADMIN)
            return service.token_of(link, salon.settings.secret())

    new = await run(rotate_one_revoke_other)
    unknown = "A" * 43
    answers = []
    for tok in (token, revoked, unknown):
        resp = await fetch(client, tok)
        answers.append((resp.status, await resp.read(), resp.headers.get("Content-Type")))
    assert answers[0][0] == 404
    assert answers[0] == answers[1] == answers[2]
    assert (await fetch(client, new)).status == 200


async def test_rotation_kills_the_old_url_in_every_worker_at_once(
    aiohttp_client: Any, salon: Salon
) -> None:
    feed_id, token = await run(salon.link, scope="company")
    workers = [await aiohttp_client(create_app(salon.settings)) for _ in range(3)]
    for w in workers:
        assert (await fetch(w, token)).status == 200
        assert (await fetch(w, token)).status == 200  # now cached in every worker
    await run(salon.rotate, feed_id)
    for w in workers:
        assert (await fetch(w, token)).status == 404


async def test_a_commit_by_another_process_reaches_the_next_request(
    client: TestClient[Any, Any], salon: Salon, db_url: str
) -> None:
    """A polled feed is answered from memory while nothing commits (on SQLite
    a look at the wal-index header); a revoke or rotation from another
    process (the CLI) must still answer 404 on the very next request."""
    await run(salon.book, "a", salon.anna, 1, 10)
    feed_id, token = await run(salon.link, staff_id=salon.anna)
    other_id, other = await run(salon.link, scope="company")
    first = await fetch(client, token)
    etag = first.headers["ETag"]
    for _ in range(3):
        assert (await fetch(client, token, **{"If-None-Match": etag})).status == 304
        assert (await fetch(client, other)).status == 200
    await asyncio.to_thread(run_cli, db_url, "feed", "revoke", "--company",
                            salon.tenant.slug, str(other_id))
    assert (await fetch(client, other)).status == 404
    await asyncio.to_thread(run_cli, db_url, "feed", "rotate", "--company",
                            salon.tenant.slug, str(feed_id))
    assert (await fetch(client, token, **{"If-None-Match": etag})).status == 404


async def test_concurrent_requests_each_get_their_own_answer(
    client: TestClient[Any, Any], salon: Salon, db_url: str
) -> None:
    """Calendar apps poll at once: requests for live, revoked and unknown
    tokens that arrive together each get their own answer, and on
    PostgreSQL their look-ups share queries instead of one each."""
    await run(salon.book, "a", salon.anna, 1, 10)
    _, anna = await run(salon.link, staff_id=salon.anna)
    _, company = await run(salon.link, scope="company")
    revoked_id, revoked = await run(salon.link, staff_id=salon.ben)

    def revoke() -> None:
        with salon.db.sync_session(write=True) as s:
            service.revoke_feed(s, salon.tenant.company_id, revoked_id, ADMIN)

    await run(revoke)
    tokens = [anna, company, revoked, "B" * 43] * 25
    feeds = client.app[FEEDS]
    before = feeds.queries
    answers = await asyncio.gather(*(fetch(client, t) for t in tokens))
    assert [a.status for a in answers] == [200, 200, 404, 404] * 25
    bodies = {t: await a.read() for t, a in zip(tokens, answers, strict=True) if a.status == 200}
    assert b"Customer a" in bodies[anna]
    assert bodies[company] != bodies[anna]
    if db_url.startswith("postgresql"):
        assert feeds.queries - before < len(tokens) // 4


async def test_a_look_up_never_takes_the_answer_of_a_query_sent_before_it(
    client: TestClient[Any, Any], salon: Salon, db_url: str
) -> None:
    """The race behind "404 on the next request", made certain: a look-up
    whose query has reached the database, a rotation committed, then a new
    look-up of the same token while the first is still out. On PostgreSQL
    look-ups share queries; the new one must wait for a query of its own."""
    if not db_url.startswith("postgresql"):
        # A SQLite look-up runs to its end before the loop moves on: nothing is
        # ever out. (And a write on the loop's thread would wait for the app's
        # own writers, which need the loop.)
        pytest.skip("only PostgreSQL look-ups are in flight while others arrive")
    feed_id, token = await run(salon.link, scope="company")
    feeds = client.app[FEEDS]
    assert await feeds.lookup(token) is not None  # connected, feed built
    first = asyncio.create_task(feeds.lookup(token))
    for _ in range(10):
        await asyncio.sleep(0)  # its query is sent
    time.sleep(0.1)  # noqa: ASYNC251 (on purpose) the loop held: the database runs it before the commit below
    salon.rotate(feed_id)  # committed, on the loop's thread
    second = asyncio.create_task(feeds.lookup(token))
    await asyncio.gather(first, second)
    assert second.result() is None


async def test_feeds_survive_a_lost_database_connection(
    client: TestClient[Any, Any], salon: Salon, db_url: str
) -> None:
    """PostgreSQL restarted or the look-up connection was killed: the next
    request reconnects and answers, and a rotation is still seen."""
    if not db_url.startswith("postgresql"):
        pytest.skip("the look-up connection is PostgreSQL's (SQLite reads the file)")
    import psycopg

    feed_id, token = await run(salon.link, scope="company")
    feeds = client.app[FEEDS]
    assert (await fetch(client, token)).status == 200
    pid = feeds._pg.pgconn.backend_pid
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    assert (await fetch(client, token)).status == 200
    assert feeds._pg.pgconn.backend_pid != pid
    new = await run(salon.rotate, feed_id)
    assert (await fetch(client, token)).status == 404
    assert (await fetch(client, new)).status == 200


async def test_plain_feed_requests_skip_the_middleware_and_answer_the_same(
    aiohttp_client: Any, salon: Salon
) -> None:
    """A feed URL as issued is answered ahead of the router and the
    middleware (its 304 is the most frequent request); the same URL with a
    percent-encoded character takes the router's way. Both give the same
    answers and both are counted in /metrics under the route's name."""
    await run(salon.book, "a", salon.anna, 1, 10)
    _, token = await run(salon.link, staff_id=salon.anna)
    app = create_app(salon.settings)
    through: list[str] = []

    @web.middleware
    async def spy(request: web.Request, handler: Any) -> web.StreamResponse:
        through.append(request.path)
        return await handler(request)

    app.middlewares.append(spy)
    client = await aiohttp_client(app)
    # The first character percent-encoded, sent as is (a client may encode any octet).
    encoded = f"%{ord(token[0]):02X}{token[1:]}"

    async def fetch_raw(token: str, method: str = "GET", **headers: str) -> Any:
        url = URL(str(client.make_url("/")).rstrip("/") + f"/feeds/{token}.ics", encoded=True)
        return await client.session.request(method, url, headers=headers,
                                            skip_auto_headers=("Accept-Encoding",))

    plain, routed = await fetch_raw(token), await fetch_raw(encoded)
    assert through == [f"/feeds/{token}.ics"]  # only the encoded one went the router's way
    assert plain.status == routed.status == 200
    assert await plain.read() == await routed.read()
    for name in ("ETag", "Last-Modified", "Content-Type", "Cache-Control", "Content-Length"):
        assert plain.headers[name] == routed.headers[name]
    etag = plain.headers["ETag"]
    for path in (token, encoded):
        assert (await fetch_raw(path, **{"If-None-Match": etag})).status == 304
        head = await fetch_raw(path, "HEAD")
        assert head.status == 200 and await head.read() == b""
        assert head.headers["Content-Length"] == plain.headers["Content-Length"]
        assert (await fetch_raw(path[:-1])).status == 404
    # The three encoded requests for the token, and both short (malformed) tokens.
    assert through.count(f"/feeds/{token}.ics") == 3 and len(through) == 5
    text = await (await client.get("/metrics")).text()
    labels = 'route="/feeds/{token}.ics"'
    assert f'calbridge_http_requests_total{{method="GET",{labels},status="200"}} 2' in text
    assert f'calbridge_http_requests_total{{method="GET",{labels},status="304"}} 2' in text
    assert f'calbridge_http_requests_total{{method="HEAD",{labels},status="200"}} 2' in text
    assert f'calbridge_http_requests_total{{method="GET",{labels},status="404"}} 2' in text


@pytest.mark.parametrize("path", [
    "/feeds/short.ics",
    "/feeds/" + "A" * 42 + "!.ics",
    "/feeds/" + "A" * 44 + ".ics",
    "/feeds/" + "é" * 43 + ".ics",
    "/feeds/..%2f..%2fetc%2fpasswd.ics",
    "/feeds/" + "A" * 20 + "%2F" + "A" * 20 + ".ics",
    "/feeds/" + "A" * 43,
    "/feeds/" + "A" * 43 + ".ics/",
    "/feeds/",
])
async def test_bad_tokens_and_path_tricks_are_404(client: TestClient[Any, Any], salon: Salon,
                                                  path: str) -> None:
    resp = await client.get(path)
    assert resp.status == 404
    assert b"Traceback" not in await resp.read()


async def test_dot_segments_cannot_escape_to_another_resource(client: TestClient[Any, Any],
                                                               salon: Salon) -> None:
    resp = await client.get("/feeds/%2e%2e/%2e%2e/api/v1/staff.ics")
    assert 400 <= resp.status < 500  # normalised away from /feeds/: the API's own 401


async def test_other_methods_are_405(client: TestClient[Any, Any], salon: Salon) -> None:
    _, token = await run(salon.link, staff_id=salon.anna)
    for method in ("POST", "PUT", "DELETE", "PATCH", "PROPFIND"):
        resp = await client.request(method, f"/feeds/{token}.ics")
        assert resp.status == 405, method
        assert "GET" in resp.headers.get("Allow", "")


async def test_huge_query_string_is_refused(client: TestClient[Any, Any], salon: Salon) -> None:
    _, token = await run(salon.link, staff_id=salon.anna)
    assert (await client.get(f"/feeds/{token}.ics?x=" + "a" * 5000)).status == 414
    assert (await client.get(f"/feeds/{token}.ics?x=" + "a" * 20000)).status in (400, 414, 431)
    assert (await client.get(f"/feeds/{token}.ics?ignored=1")).status == 200


async def test_token_never_reaches_the_logs(client: TestClient[Any, Any], salon: Salon,
                                            caplog: pytest.LogCaptureFixture) -> None:
    _, token = await run(salon.link, staff_id=salon.anna)
    caplog.set_level(logging.DEBUG)
    await fetch(client, token)
    await fetch(client, token[:-1] + ("B" if token[-1] != "B" else "C"))
    await client.post(f"/feeds/{token}.ics")
    # aiohttp's own access logger belongs to the test server; `calbridge serve`
    # turns it off and writes the redacted JSON access log instead.
    records = [r for r in caplog.records if r.name != "aiohttp.access"]
    assert any(r.name == "calbridge.access" for r in records)
    for record in records:
        assert token not in record.getMessage()
        assert token[:-1] not in record.getMessage()


async def test_uid_sequence_and_last_modified_follow_material_changes(
    client: TestClient[Any, Any], salon: Salon
) -> None:
    await run(salon.book, "a", salon.anna, 3, 10)
    _, token = await run(salon.link, staff_id=salon.anna)
    before = next(iter(by_uid(await (await fetch(client, token)).read()).values()))
    uid = str(before["UID"])
    await asyncio.sleep(1.05)  # LAST-MODIFIED has whole seconds
    await run(salon.update, "a", {"start": salon_at(4, 9), "end": salon_at(4, 10)})
    moved = by_uid(await (await fetch(client, token)).read())[uid]
    assert int(moved["SEQUENCE"]) == int(before["SEQUENCE"]) + 1
    assert moved.decoded("LAST-MODIFIED") > before.decoded("LAST-MODIFIED")
    assert moved.decoded("DTSTART").date() == TODAY + dt.timedelta(days=4)
    resp = await fetch(client, token)
    etag = resp.headers["ETag"]
    # The same value: a save that changes nothing.
    await run(salon.update, "a", {"location": "Salon, chair 2"})
    resp = await fetch(client, token, **{"If-None-Match": etag})
    assert resp.status == 304
    await run(salon.update, "a", {"customer_name": "Someone else"})
    renamed = by_uid(await (await fetch(client, token)).read())[uid]
    assert int(renamed["SEQUENCE"]) == int(moved["SEQUENCE"]) + 1


def salon_at(days: int, hour: int) -> str:
    return at(days, hour)


async def test_cancelled_appointments_leave_the_next_fetch(client: TestClient[Any, Any],
                                                           salon: Salon) -> None:
    await run(salon.book, "a", salon.anna, 1, 10)
    await run(salon.book, "b", salon.anna, 2, 10)
    _, token = await run(salon.link, staff_id=salon.anna)
    assert len(events(await (await fetch(client, token)).read())) == 2
    await run(salon.update, "a", {"status": "cancelled"})
    remaining = events(await (await fetch(client, token)).read())
    assert [str(e["SUMMARY"]) for e in remaining] == ["Haircut – Customer b"]


async def test_feed_covers_the_configured_window(aiohttp_client: Any, salon: Salon) -> None:
    await run(salon.book, "old", salon.anna, -70, 10)
    await run(salon.book, "recent", salon.anna, -50, 10)
    await run(salon.book, "next-year", salon.anna, 390, 10)
    await run(salon.book, "far", salon.anna, 420, 10)
    _, token = await run(salon.link, staff_id=salon.anna)
    client = await aiohttp_client(create_app(salon.settings))
    names = {str(e["SUMMARY"]) for e in events(await (await fetch(client, token)).read())}
    assert names == {"Haircut – Customer recent", "Haircut – Customer next-year"}
    narrow = salon.settings.replace(feeds={"window_days_back": 7, "window_days_ahead": 30})
    client = await aiohttp_client(create_app(narrow))
    assert events(await (await fetch(client, token)).read()) == []


async def test_large_feed_logs_a_warning_without_the_token(
    aiohttp_client: Any, salon: Salon, caplog: pytest.LogCaptureFixture
) -> None:
    for day in range(1, 6):
        await run(salon.book, f"a{day}", salon.anna, day, 10)
    feed_id, token = await run(salon.link, staff_id=salon.anna)
    client = await aiohttp_client(create_app(salon.settings.replace(feeds={"warn_bytes": 2000})))
    with caplog.at_level(logging.WARNING, logger="calbridge.feeds"):
        assert (await fetch(client, token)).status == 200
    warnings = [r.getMessage() for r in caplog.records if r.name == "calbridge.feeds"]
    assert any(f"feed link {feed_id} is" in w for w in warnings)
    assert all(token not in w for w in warnings)


async def test_calendar_header(aiohttp_client: Any, salon: Salon) -> None:
    import icalendar

    await run(salon.book, "a", salon.anna, 1, 10)
    _, token = await run(salon.link, staff_id=salon.anna)
    client = await aiohttp_client(create_app(salon.settings.replace(feeds={"refresh_minutes": 5})))
    body = (await (await fetch(client, token)).read()).decode()
    cal = icalendar.Calendar.from_ical(body)
    assert str(cal["X-WR-CALNAME"]) == "Anna Müller"
    assert str(cal["X-WR-TIMEZONE"]) == "Europe/Paris"
    assert str(cal["METHOD"]) == "PUBLISH"
    assert "REFRESH-INTERVAL;VALUE=DURATION:PT5M\r\n" in body
    assert "X-PUBLISHED-TTL:PT5M\r\n" in body
    assert [str(tz["TZID"]) for tz in cal.walk("VTIMEZONE")] == ["Europe/Paris"]
    assert "\n" not in body.replace("\r\n", "")


async def test_group_and_company_feeds_name_the_staff_and_show_blocked_time_as_busy(
    client: TestClient[Any, Any], salon: Salon
) -> None:
    await run(salon.book, "a", salon.anna, 1, 10)
    await run(salon.book, "b", salon.ben, 1, 10)
    await run(salon.book, "c", salon.chloe, 1, 10, timezone="America/New_York")
    text, first, last = weekly_block()
    await run(salon.block, salon.anna, text, first, last)
    _, group_token = await run(salon.link, group_id=salon.group)
    _, company_token = await run(salon.link, scope="company", privacy="limited")
    _, busy_token = await run(salon.link, scope="company", privacy="busy")
    _, staff_token = await run(salon.link, staff_id=salon.anna)

    group = by_uid(await (await fetch(client, group_token)).read())
    summaries = sorted(str(e["SUMMARY"]) for e in group.values())
    assert summaries == ["Anna Müller: Haircut – Customer a", "Ben Okafor: Haircut – Customer b",
                         "Busy"]
    company = by_uid(await (await fetch(client, company_token)).read())
    assert sorted(str(e["SUMMARY"]) for e in company.values()) == [
        "Anna Müller: Haircut", "Ben Okafor: Haircut", "Busy", "Chloé Durand: Haircut"]
    busy_body = await (await fetch(client, busy_token)).read()
    busy = by_uid(busy_body)
    assert {str(e["SUMMARY"]) for e in busy.values()} == {"Busy"}
    assert len(busy) == 4
    for secret in (b"Customer", b"Haircut", b"Anna", b"Salon", b"Therapy", b"private",
                   b"customer.example", b"block@client"):
        assert secret not in busy_body
    blocked = next(e for e in busy.values() if "RRULE" in e)
    assert blocked["RRULE"]["FREQ"] == ["WEEKLY"]
    assert "EXDATE" in blocked
    staff_summaries = [str(e["SUMMARY"]) for e in events(await (await fetch(client, staff_token)).read())]
    assert staff_summaries == ["Haircut – Customer a"]  # their own blocked time is already theirs


async def test_group_membership_changes_show_up(client: TestClient[Any, Any], salon: Salon) -> None:
    from bridge.db import repo

    await run(salon.book, "a", salon.anna, 1, 10)
    await run(salon.book, "c", salon.chloe, 1, 10)
    _, token = await run(salon.link, group_id=salon.group)
    assert len(events(await (await fetch(client, token)).read())) == 1
    def add_chloe() -> None:
        with salon.db.sync_session(write=True) as s:
            repo.add_member(s, salon.tenant.company_id, salon.group, salon.chloe, ADMIN)

    await run(add_chloe)
    assert len(events(await (await fetch(client, token)).read())) == 2


async def test_feed_server_builds_once_per_version(client: TestClient[Any, Any],
                                                   salon: Salon) -> None:
    await run(salon.book, "a", salon.anna, 1, 10)
    _, token = await run(salon.link, staff_id=salon.anna)
    feeds = client.app[FEEDS]
    for _ in range(5):
        assert (await fetch(client, token)).status == 200
    assert feeds.builds == 1
    await run(salon.update, "a", {"notes": "changed"})
    for _ in range(3):
        assert (await fetch(client, token)).status == 200
    assert feeds.builds == 2
