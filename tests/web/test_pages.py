"""Console pages through aiohttp_client: staff list, feed links (create,
rotate, revoke with a confirmation), groups and company, recent changes.
Every action is a plain form POST (no JavaScript); every failure changes
nothing; another company's ids answer 404."""

from __future__ import annotations

import html
import re
from typing import Any

from aiohttp.test_utils import TestClient

from bridge.db import repo
from bridge.db.engine import Database
from bridge.web import sessions
from tests.conftest import Tenant, count_rows
from tests.web.conftest import Admin, add_group, add_staff, csrf_of, make_admin, post_form

_HTTPS = re.compile(r'value="(http://[^"]+/feeds/[A-Za-z0-9_-]{43}\.ics)"')


def feed_urls(page: str) -> list[str]:
    return _HTTPS.findall(page)


async def test_staff_list_search_and_group_filter(
    console: TestClient[Any, Any], db: Database, tenant: Tenant, other_tenant: Tenant
) -> None:
    physio = add_group(db, tenant, "physio", "Physiotherapy")
    add_staff(db, tenant, "anna@acme.example.com", "Anna Müller", [physio])
    add_staff(db, tenant, "ben@acme.example.com", "Ben Okafor")
    add_staff(db, other_tenant, "zed@globex.example.com", "Zed Globex")

    page = await (await console.get("/admin/staff")).text()
    assert "Anna Müller" in page and "Ben Okafor" in page
    assert "Zed Globex" not in page  # another company's staff never shows
    assert "2 staff members" in page

    found = await (await console.get("/admin/staff?q=OKAF")).text()
    assert "Ben Okafor" in found and "Anna Müller" not in found
    by_mail = await (await console.get("/admin/staff?q=anna@")).text()
    assert "Anna Müller" in by_mail and "Ben Okafor" not in by_mail
    grouped = await (await console.get(f"/admin/staff?group={physio}")).text()
    assert "Anna Müller" in grouped and "Ben Okafor" not in grouped
    none = await (await console.get("/admin/staff?q=nobody")).text()
    assert "No staff member matches." in none

    other_group = add_group(db, other_tenant, "x", "Globex group")
    for bad in ("abc", str(other_group)):
        response = await console.get(f"/admin/staff?group={bad}")
        assert response.status == 404
        assert "There is no such group." in await response.text()


async def test_feed_link_create_subscribe_rotate_revoke(
    console: TestClient[Any, Any], db: Database, tenant: Tenant
) -> None:
    staff_id = add_staff(db, tenant, "anna@acme.example.com", "Anna Müller")
    page_url = f"/admin/staff/{staff_id}"
    assert "No feed link yet." in await (await console.get(page_url)).text()

    created = await post_form(console, page_url, f"{page_url}/feeds",
                              {"privacy": "limited", "label": "iPhone"})
    assert created.status == 303
    page = await (await console.get(created.headers["Location"])).text()
    assert "Feed link created." in page
    assert "Service and time only" in page and "iPhone" in page
    [url] = feed_urls(page)
    webcal = "webcal://" + url.split("://", 1)[1]
    assert f'href="{webcal}"' in page
    assert html.escape("https://calendar.google.com/calendar/render?cid=webcal%3A%2F%2F") in page
    assert html.escape("https://outlook.live.com/calendar/0/addfromweb?url=webcal%3A%2F%2F") in page
    path = url.split("://", 1)[1].split("/", 1)[1]
    feed = await console.get("/" + path)
    assert feed.status == 200 and "BEGIN:VCALENDAR" in await feed.text()

    feed_id = re.search(r'data-feed-id="(\d+)"', page)
    assert feed_id
    fid = feed_id.group(1)
    confirm = await console.get(f"/admin/feeds/{fid}/rotate")
    confirm_html = await confirm.text()
    assert "Rotate this feed link?" in confirm_html and url in confirm_html
    assert count_rows(db, "change_log") and "feed.rotated" not in str(_types(db))

    rotated = await console.post(f"/admin/feeds/{fid}/rotate",
                                 data={"csrf": csrf_of(confirm_html)}, allow_redirects=False)
    assert rotated.status == 303
    page = await (await console.get(rotated.headers["Location"])).text()
    assert "the old URL no longer works" in page
    [new_url] = feed_urls(page)
    assert new_url != url
    assert (await console.get("/" + path)).status == 404
    assert (await console.get("/" + new_url.split("://", 1)[1].split("/", 1)[1])).status == 200

    confirm_html = await (await console.get(f"/admin/feeds/{fid}/revoke")).text()
    assert "Revoke this feed link?" in confirm_html
    revoked = await console.post(f"/admin/feeds/{fid}/revoke",
                                 data={"csrf": csrf_of(confirm_html)}, allow_redirects=False)
    assert revoked.status == 303
    page = await (await console.get(revoked.headers["Location"])).text()
    assert "Feed link revoked" in page and feed_urls(page) == []
    assert (await console.get("/" + new_url.split("://", 1)[1].split("/", 1)[1])).status == 404
    again = await console.get(f"/admin/feeds/{fid}/rotate")
    assert again.status == 409 and "already revoked" in await again.text()
    assert {"feed.created", "feed.rotated", "feed.revoked"} <= _types(db)


def _types(db: Database) -> set[str]:
    from sqlalchemy import select

    from bridge.db.models import ChangeEntry

    with db.sync_session() as s:
        return set(s.execute(select(ChangeEntry.type)).scalars())


async def test_a_bad_field_is_shown_next_to_it_and_nothing_is_created(
    console: TestClient[Any, Any], db: Database, tenant: Tenant
) -> None:
    staff_id = add_staff(db, tenant, "anna@acme.example.com", "Anna Müller")
    response = await post_form(console, f"/admin/staff/{staff_id}", f"/admin/staff/{staff_id}/feeds",
                               {"privacy": "everything", "label": "x"})
    assert response.status == 422
    page = await response.text()
    assert 'class="field-error" role="alert">privacy must be one of full, limited, busy' in page
    response = await post_form(console, f"/admin/staff/{staff_id}", f"/admin/staff/{staff_id}/feeds",
                               {"privacy": "full", "label": "x" * 201})
    assert response.status == 422
    assert "label must be a string of at most 200 characters" in await response.text()
    assert count_rows(db, "feed_links") == 0


async def test_a_form_without_its_csrf_token_changes_nothing(
    console: TestClient[Any, Any], db: Database, tenant: Tenant, admin: Admin
) -> None:
    staff_id = add_staff(db, tenant, "anna@acme.example.com", "Anna Müller")
    before = count_rows(db, "change_log")
    for token in ("", "forged", sessions.csrf_token(b"other-secret", "nonce")):
        response = await console.post(f"/admin/staff/{staff_id}/feeds",
                                      data={"csrf": token, "privacy": "full"},
                                      allow_redirects=False)
        assert response.status == 403
        assert "nothing was changed" in await response.text()
    # A token from another admin's session does not work either.
    other = make_admin(db, tenant, "second@acme.example.com")
    assert other.company_id == admin.company_id
    assert count_rows(db, "feed_links") == 0
    assert count_rows(db, "change_log") == before + 1  # only admin.created


async def test_another_companys_ids_answer_404_and_change_nothing(
    console: TestClient[Any, Any], db: Database, tenant: Tenant, other_tenant: Tenant,
    settings: Any,
) -> None:
    from bridge.feeds import service as feeds

    mine = add_staff(db, tenant, "anna@acme.example.com", "Anna Müller")
    theirs = add_staff(db, other_tenant, "zed@globex.example.com", "Zed Globex")
    their_group = add_group(db, other_tenant, "ops", "Globex ops")
    with db.sync_session(write=True) as s:
        link = feeds.create_feed(s, other_tenant.company_id, {"staff_id": theirs},
                                 settings.secret(), repo.Actor("api", "t"))
        their_feed = link.id
    html_page = await (await console.get(f"/admin/staff/{mine}")).text()
    token = csrf_of(html_page)
    for path in (f"/admin/staff/{theirs}", f"/admin/staff/{theirs}/invite",
                 f"/admin/feeds/{their_feed}/rotate", f"/admin/changes?staff={theirs}",
                 "/admin/staff/999999", "/admin/staff/abc"):
        response = await console.get(path)
        assert response.status == 404, path
        assert "Zed" not in await response.text()
    before = count_rows(db, "change_log")
    for path in (f"/admin/staff/{theirs}/feeds", f"/admin/feeds/{their_feed}/rotate",
                 f"/admin/feeds/{their_feed}/revoke", f"/admin/groups/{their_group}/feeds",
                 f"/admin/staff/{theirs}/invite"):
        response = await console.post(path, data={"csrf": token, "privacy": "full",
                                                   "subject": "s", "body": "b"},
                                      allow_redirects=False)
        assert response.status == 404, path
    assert count_rows(db, "change_log") == before
    assert count_rows(db, "feed_links") == 1
    with db.sync_session() as s:
        assert feeds.get_feed(s, other_tenant.company_id, their_feed).revoked_at is None


async def test_group_and_company_feed_links(
    console: TestClient[Any, Any], db: Database, tenant: Tenant
) -> None:
    physio = add_group(db, tenant, "physio", "Physiotherapy")
    add_staff(db, tenant, "anna@acme.example.com", "Anna Müller", [physio])
    page = await (await console.get("/admin/groups")).text()
    assert "Physiotherapy" in page and "1 member: Anna Müller" in page
    assert "No company feed link yet." in page
    created = await post_form(console, "/admin/groups", "/admin/company/feeds", {"privacy": "busy"})
    assert created.status == 303
    created = await post_form(console, "/admin/groups", f"/admin/groups/{physio}/feeds",
                              {"privacy": "full", "label": "reception"})
    assert created.status == 303
    page = await (await console.get("/admin/groups?done=feed-created")).text()
    assert len(feed_urls(page)) == 2
    assert "Busy/free only" in page and "reception" in page
    bad = await post_form(console, "/admin/groups", f"/admin/groups/{physio}/feeds",
                          {"privacy": "nope"})
    assert bad.status == 422
    bad_html = await bad.text()
    assert bad_html.count("privacy must be one of") == 1
    assert count_rows(db, "feed_links") == 2


async def test_recent_changes_in_words_newest_first_with_filters(
    console: TestClient[Any, Any], db: Database, tenant: Tenant
) -> None:
    anna = add_staff(db, tenant, "anna@acme.example.com", "Anna Müller")
    ben = add_staff(db, tenant, "ben@acme.example.com", "Ben Okafor")
    with db.sync_session(write=True) as s:
        appt = repo.create_appointment(s, tenant.company_id, {
            "staff_id": anna, "start": "2026-11-24T14:00:00+01:00",
            "end": "2026-11-24T15:00:00+01:00", "service_name": "Follow-up",
            "customer_name": "Léa Martin"}, repo.Actor("api", ""))
        repo.update_appointment(s, tenant.company_id, appt.id, {
            "start": "2026-11-24T15:30:00+01:00", "end": "2026-11-24T16:30:00+01:00"},
            repo.Actor("caldav", "anna@acme.example.com"))
        other = repo.create_appointment(s, tenant.company_id, {
            "staff_id": ben, "start": "2026-11-25T09:00:00+01:00",
            "end": "2026-11-25T09:30:00+01:00", "service_name": "Check-up"},
            repo.Actor("api", ""))
        repo.cancel_appointment(s, tenant.company_id, other.id,
                                repo.Actor("caldav", "ben@acme.example.com"))
    page = await (await console.get("/admin/changes")).text()
    moved = ("Anna Müller</strong> moved Follow-up – Léa Martin in their calendar: "
             "Tue 24 Nov, 14:00 → 15:30")
    assert moved in page
    assert "Ben Okafor</strong> cancelled Check-up in their calendar" in page
    assert ("The booking system</strong> booked Follow-up – Léa Martin through the booking "
            "system: Tue 24 Nov, 14:00–15:00") in page
    assert page.index("cancelled Check-up") < page.index("moved Follow-up")  # newest first

    only_cal = await (await console.get("/admin/changes?source=caldav")).text()
    assert "moved Follow-up" in only_cal and "booked Follow-up" not in only_cal
    only_ben = await (await console.get(f"/admin/changes?staff={ben}&source=caldav")).text()
    assert "cancelled Check-up" in only_ben and "moved Follow-up" not in only_ben
    staff_page = await (await console.get(f"/admin/staff/{anna}")).text()
    assert moved in staff_page and "Check-up" not in staff_page

    for query in ("source=email", "staff=abc", "before=-1"):
        response = await console.get(f"/admin/changes?{query}")
        assert response.status == 400, query


async def test_changes_page_by_page(
    console: TestClient[Any, Any], db: Database, tenant: Tenant
) -> None:
    for i in range(55):
        add_staff(db, tenant, f"p{i}@acme.example.com", f"Person {i:02d}")
    page = await (await console.get("/admin/changes")).text()
    assert "added staff member Person 54" in page
    assert "added staff member Person 04" not in page
    older = re.search(r'href="(/admin/changes\?before=\d+)"', page)
    assert older
    rest = await (await console.get(html.unescape(older.group(1)))).text()
    assert "added staff member Person 04" in rest and "added staff member Person 54" not in rest
