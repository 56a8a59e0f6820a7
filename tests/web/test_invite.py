"""Inviting a staff member by email: an editable message with their feed
URL, subscribe links and CalDAV steps, sent as plain text and HTML through
a real SMTP server (aiosmtpd on 127.0.0.1)."""

from __future__ import annotations

import html
import re
from typing import Any

from aiohttp.test_utils import TestClient

from bridge.app import create_app
from bridge.config import Settings
from bridge.db.engine import Database
from tests.conftest import Tenant, count_rows
from tests.web.conftest import (
    Admin,
    add_staff,
    csrf_of,
    free_port,
    post_form,
    sign_in,
)


async def _console(aiohttp_client: Any, settings: Settings, admin: Admin) -> TestClient[Any, Any]:
    client = await aiohttp_client(create_app(settings))
    assert (await sign_in(client, admin.email, admin.password)).status == 303
    return client


async def test_invitation_arrives_with_links_in_both_parts(
    aiohttp_client: Any, settings: Settings, admin: Admin, db: Database, tenant: Tenant,
    smtp_server: Any,
) -> None:
    settings = settings.replace(smtp={"port": smtp_server.port,
                                      "from_address": "Acme <calendar@acme.example.com>"})
    client = await _console(aiohttp_client, settings, admin)
    staff_id = add_staff(db, tenant, "anna@acme.example.com", "Anna Müller")
    form = await (await client.get(f"/admin/staff/{staff_id}/invite")).text()
    assert "has no feed link yet" in form
    await post_form(client, f"/admin/staff/{staff_id}", f"/admin/staff/{staff_id}/feeds",
                    {"privacy": "full"})
    form = await (await client.get(f"/admin/staff/{staff_id}/invite")).text()
    assert "has no feed link yet" not in form
    body = html.unescape(re.search(r'<textarea[^>]*>(.*?)</textarea>', form, re.S).group(1))
    feed = re.search(r"(http://\S+/feeds/\S+\.ics)", body)
    assert feed, body
    assert "Hello Anna," in body and "Username: anna@acme.example.com" in body
    assert "https://calendar.google.com/calendar/render?cid=" in body
    edited = body.replace("Hello Anna,", "Hi Anna, welcome aboard!")
    response = await client.post(f"/admin/staff/{staff_id}/invite", data={
        "csrf": csrf_of(form), "subject": "  Your calendar,\n  please ", "body": edited},
        allow_redirects=False)
    assert response.status == 303
    page = await (await client.get(response.headers["Location"])).text()
    assert "Invitation sent." in page
    assert "sent an invitation to Anna Müller" in page

    [msg] = smtp_server.messages
    assert msg["To"] == "Anna Müller <anna@acme.example.com>"
    assert msg["From"] == "Acme <calendar@acme.example.com>"
    assert msg["Subject"] == "Your calendar, please"
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(preferencelist=("plain",)).get_content()
    html_part = msg.get_body(preferencelist=("html",)).get_content()
    assert "Hi Anna, welcome aboard!" in text and feed.group(1) in text
    assert f'<a href="{feed.group(1)}">' in html_part
    webcal = "webcal://" + feed.group(1).split("://", 1)[1]
    assert f'<a href="{webcal}">' in html_part
    assert "Hi Anna, welcome aboard!" in html_part


async def test_an_empty_field_is_refused_next_to_it_and_nothing_is_sent(
    aiohttp_client: Any, settings: Settings, admin: Admin, db: Database, tenant: Tenant,
    smtp_server: Any,
) -> None:
    settings = settings.replace(smtp={"port": smtp_server.port})
    client = await _console(aiohttp_client, settings, admin)
    staff_id = add_staff(db, tenant, "anna@acme.example.com", "Anna Müller")
    before = count_rows(db, "change_log")
    for data, message in (({"subject": " ", "body": "hello"}, "Write a subject."),
                          ({"subject": "Hi", "body": "\n \n"}, "Write a message."),
                          ({"subject": "x" * 201, "body": "hi"}, "longer than 200")):
        response = await post_form(client, f"/admin/staff/{staff_id}/invite",
                                   f"/admin/staff/{staff_id}/invite", data)
        assert response.status == 422
        page = await response.text()
        assert message in page
        assert html.escape(data["body"].strip()) in page  # what was typed is kept
    assert smtp_server.messages == []
    assert count_rows(db, "change_log") == before


async def test_an_unreachable_mail_server_is_reported_and_nothing_logged(
    aiohttp_client: Any, settings: Settings, admin: Admin, db: Database, tenant: Tenant,
) -> None:
    settings = settings.replace(smtp={"port": free_port(), "timeout_seconds": 2})
    client = await _console(aiohttp_client, settings, admin)
    staff_id = add_staff(db, tenant, "anna@acme.example.com", "Anna Müller")
    before = count_rows(db, "change_log")
    response = await post_form(client, f"/admin/staff/{staff_id}/invite",
                               f"/admin/staff/{staff_id}/invite",
                               {"subject": "Hi", "body": "Hello"})
    assert response.status == 502
    page = await response.text()
    assert "The email was not sent (cannot send email via 127.0.0.1:" in page
    assert "Check [smtp] in the configuration." in page
    assert count_rows(db, "change_log") == before
