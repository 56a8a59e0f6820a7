"""Bad input, rights, logins and races at the CalDAV endpoint.

Every refused request must get a clear 4xx and write nothing: checked by
counting rows and change-log entries before and after.
"""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.config import Settings
from bridge.db.engine import Database
from tests.conftest import ROOT, SAMPLES, Tenant, count_rows, make_tenant
from tests.dav.conftest import LiveServer, StaffLogin, add_staff, create_appointment, raw

EVENT = """BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//Test//EN\r
BEGIN:VEVENT\r
UID:{uid}\r
DTSTAMP:20260101T000000Z\r
DTSTART:20260310T090000Z\r
DTEND:20260310T100000Z\r
SUMMARY:Dentist\r
END:VEVENT\r
END:VCALENDAR\r
"""


def written(db: Database) -> tuple[int, int, int]:
    return (count_rows(db, "blocked_times"), count_rows(db, "appointments"),
            count_rows(db, "change_log"))


def put(live: LiveServer, who: StaffLogin, name: str, body: str, **headers: str) -> int:
    response = raw(live, who, "PUT", f"{who.calendar_path}{name}", body,
                   {"Content-Type": "text/calendar; charset=utf-8", **headers})
    return response.status_code


BAD = {
    "malformed": "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nthis is not ical\r\n",
    "two_uids": EVENT.format(uid="a").replace(
        "END:VCALENDAR", EVENT.format(uid="b").split("VERSION:2.0\r\nPRODID:-//Test//EN\r\n")[1]
        .replace("BEGIN:VCALENDAR\r\n", "").replace("\r\nEND:VCALENDAR\r\n", "")
        + "\r\nEND:VCALENDAR"),
    "method": EVENT.format(uid="m").replace("VERSION:2.0", "VERSION:2.0\r\nMETHOD:REQUEST"),
    "vtodo": EVENT.format(uid="t").replace("VEVENT", "VTODO"),
    "end_before_start": EVENT.format(uid="e").replace("DTEND:20260310T100000Z",
                                                      "DTEND:20260310T080000Z"),
    "absurd_rrule": EVENT.format(uid="r").replace("SUMMARY", "RRULE:FREQ=SECONDLY\r\nSUMMARY"),
    "huge_count": EVENT.format(uid="c").replace("SUMMARY", "RRULE:FREQ=DAILY;COUNT=999999\r\n"
                                                           "SUMMARY"),
    "vcard": "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:v\r\nFN:Someone\r\nEND:VCARD\r\n",
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_calendar_object_is_4xx_and_writes_nothing(
        live: LiveServer, anna: StaffLogin, db: Database, case: str) -> None:
    before = written(db)
    status = put(live, anna, f"{case}.ics", BAD[case])
    assert 400 <= status < 500, status
    assert written(db) == before


def test_refusal_explains_itself(live: LiveServer, anna: StaffLogin) -> None:
    response = raw(live, anna, "PUT", f"{anna.calendar_path}m.ics", BAD["method"],
                   {"Content-Type": "text/calendar"})
    assert response.status_code == 400
    assert "METHOD" in response.text and "valid-calendar-object-resource" in response.text
    response = raw(live, anna, "PUT", f"{anna.calendar_path}t.ics", BAD["vtodo"],
                   {"Content-Type": "text/calendar"})
    assert "only VEVENT" in response.text or response.status_code in (400, 403)


def test_oversized_body_is_413(live: LiveServer, anna: StaffLogin, db: Database) -> None:
    before = written(db)
    padding = "X-PAD:" + "a" * 70 + "\r\n"
    body = EVENT.format(uid="big").replace("SUMMARY", padding * 5000 + "SUMMARY")
    assert put(live, anna, "big.ics", body) == 413
    assert written(db) == before


@pytest.mark.parametrize("path", [
    "/dav/bob@acme.example/calendar/x.ics",
    "/dav/anna@acme.example/other/x.ics",
    "/dav/anna@acme.example/x.ics",
    "/dav/x.ics",
])
def test_path_outside_home_is_refused(live: LiveServer, anna: StaffLogin, db: Database,
                                      path: str) -> None:
    add_staff(db, anna.company_id, "bob@acme.example", "Bob")
    before = written(db)
    response = raw(live, anna, "PUT", path, EVENT.format(uid="out"),
                   {"Content-Type": "text/calendar"})
    assert 400 <= response.status_code < 500
    assert written(db) == before


@pytest.mark.parametrize("sample", sorted(p.name for p in (SAMPLES / "invalid").glob("*.ics")))
def test_invalid_samples_write_nothing(live: LiveServer, anna: StaffLogin, db: Database,
                                       sample: str) -> None:
    """Every file in invalid/ is refused: each breaks RFC 5545 in a way that would
    lose or invent data if repaired silently (a bad date, a bad parameter, a
    broken line), so the client is told instead."""
    body = (SAMPLES / "invalid" / sample).read_bytes().decode("utf-8", "replace")
    before = written(db)
    status = put(live, anna, sample, body)
    assert 400 <= status < 500, status
    assert written(db) == before


def test_staff_cannot_read_colleague_or_other_company(
        live: LiveServer, anna: StaffLogin, db: Database, other_tenant: Tenant) -> None:
    bob = add_staff(db, anna.company_id, "bob@acme.example", "Bob")
    zed = add_staff(db, other_tenant.company_id, "zed@globex.example", "Zed")
    create_appointment(db, anna.company_id, bob.staff_id)
    for who, path in [(anna, bob.calendar_path), (zed, bob.calendar_path),
                      (zed, anna.calendar_path), (bob, zed.calendar_path)]:
        response = raw(live, who, "PROPFIND", path, "", {"Depth": "1"})
        assert response.status_code == 403, (who.email, path)
        response = raw(live, who, "GET", path)
        assert response.status_code == 403


def test_group_calendar_is_read_only_and_only_for_members(
        live: LiveServer, anna: StaffLogin, db: Database) -> None:
    from bridge.db import repo

    with db.sync_session(write=True) as s:
        group = repo.create_group(s, anna.company_id, {"slug": "front", "name": "Front desk"},
                                  repo.Actor("admin"))
        repo.add_member(s, anna.company_id, group.id, anna.staff_id, repo.Actor("admin"))
        gid = group.id
    bob = add_staff(db, anna.company_id, "bob@acme.example", "Bob", groups=[gid])
    carl = add_staff(db, anna.company_id, "carl@acme.example", "Carl")
    create_appointment(db, anna.company_id, bob.staff_id)
    group_path = f"/dav/{anna.email}/group-front/"
    listing = raw(live, anna, "PROPFIND", group_path, "", {"Depth": "1"})
    assert listing.status_code == 207 and listing.text.count(".ics") == 1
    before = written(db)
    assert raw(live, anna, "PUT", group_path + "n.ics", EVENT.format(uid="g"),
               {"Content-Type": "text/calendar"}).status_code == 403
    assert written(db) == before
    assert raw(live, carl, "PROPFIND", f"/dav/{carl.email}/group-front/", "",
               {"Depth": "0"}).status_code in (403, 404)


def test_wrong_password_is_401_and_rate_limited(
        live: LiveServer, anna: StaffLogin, db: Database) -> None:
    wrong = StaffLogin(anna.staff_id, anna.company_id, anna.email, "nope")
    statuses = [raw(live, wrong, "PROPFIND", anna.calendar_path).status_code
                for _ in range(11)]
    assert set(statuses) == {401}
    # Past the limit even the right password is refused for a while.
    assert raw(live, anna, "PROPFIND", anna.calendar_path, "",
               {"Depth": "0"}).status_code == 401
    assert count_rows(db, "login_failures") >= 10


def test_revoked_app_password_stops_working(
        live: LiveServer, anna: StaffLogin, db: Database) -> None:
    from bridge.dav import passwords
    from bridge.db import repo

    assert raw(live, anna, "PROPFIND", anna.calendar_path, "", {"Depth": "0"}).status_code == 207
    with db.sync_session(write=True) as s:
        (row,) = passwords.list_for(s, anna.company_id, anna.staff_id)
        assert row.last_used_at is not None
        passwords.revoke(s, anna.company_id, anna.staff_id, row.id, repo.Actor("admin"))
    assert raw(live, anna, "PROPFIND", anna.calendar_path, "", {"Depth": "0"}).status_code == 401


def test_concurrent_puts_with_same_if_match_one_wins(
        live: LiveServer, anna: StaffLogin, db: Database) -> None:
    appt_id = create_appointment(db, anna.company_id, anna.staff_id)
    with db.sync_session() as s:
        from bridge.db.models import Appointment

        appt = s.get(Appointment, appt_id)
        assert appt is not None and appt.dav_text is not None
        text, etag, href = appt.dav_text, appt.etag, appt.href

    def attempt(i: int) -> int:
        body = text.replace("SUMMARY:", f"DESCRIPTION:note {i}\r\nSUMMARY:")
        return raw(live, anna, "PUT", anna.calendar_path + href, body,
                   {"Content-Type": "text/calendar", "If-Match": f'"{etag}"'}).status_code

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        statuses = sorted(pool.map(attempt, range(6)))
    assert statuses.count(412) == 5 and statuses[0] in (200, 201, 204)
    notes = [e for e in count_changes(db) if e == "appointment.updated"]
    assert len(notes) == 1


def count_changes(db: Database) -> list[str]:
    from sqlalchemy import select

    from bridge.db.models import ChangeEntry

    with db.sync_session() as s:
        return list(s.execute(select(ChangeEntry.type)).scalars())


def test_well_known_redirects_to_dav_root(live: LiveServer, anna: StaffLogin) -> None:
    response = raw(live, None, "GET", "/.well-known/caldav")
    assert response.status_code == 301
    assert response.headers["Location"] == f"{live.url}/dav/"


def test_x_script_name_is_ignored(live: LiveServer, anna: StaffLogin) -> None:
    body = ('<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop>'
            "<D:current-user-principal/></D:prop></D:propfind>")
    response = raw(live, anna, "PROPFIND", "/dav/", body,
                   {"Depth": "0", "X-Script-Name": "/evil", "Content-Type": "application/xml"})
    assert response.status_code == 207
    assert "/evil" not in response.text
    assert "<href>/dav/anna%40acme.example/</href>" in response.text


def test_dav_prefix_does_not_swallow_neighbours(live: LiveServer, anna: StaffLogin) -> None:
    assert raw(live, anna, "PROPFIND", "/dav2/", "", {"Depth": "0"}).status_code in (404, 405)


def test_options_advertises_calendar_access(live: LiveServer, anna: StaffLogin) -> None:
    response = raw(live, anna, "OPTIONS", anna.calendar_path)
    assert "calendar-access" in response.headers.get("DAV", "")


def test_app_password_api(live: LiveServer, db: Database, tenant: Tenant,
                          other_tenant: Tenant) -> None:
    staff = add_staff(db, tenant.company_id, "dora@acme.example", "Dora")
    base = f"/api/v1/staff/{staff.staff_id}/app-passwords"
    created = raw(live, None, "POST", base, json.dumps({"label": "iPhone"}),
                  {**tenant.headers, "Content-Type": "application/json"})
    assert created.status_code == 201
    data = created.json()
    assert data["caldav"]["username"] == "dora@acme.example" and len(data["password"]) == 27
    login = StaffLogin(staff.staff_id, tenant.company_id, staff.email, data["password"])
    assert raw(live, login, "PROPFIND", login.calendar_path, "",
               {"Depth": "0"}).status_code == 207
    listed = raw(live, None, "GET", base, headers=tenant.headers).json()["items"]
    assert [p["label"] for p in listed] == ["test", "iPhone"]
    assert all("password" not in p and "hash" not in str(p) for p in listed)
    assert raw(live, None, "GET", base, headers=other_tenant.headers).status_code == 404
    assert raw(live, None, "DELETE", f"{base}/{data['id']}",
               headers=tenant.headers).status_code == 204
    assert raw(live, login, "PROPFIND", login.calendar_path, "",
               {"Depth": "0"}).status_code == 401


def test_app_password_cli(settings_file: Path, db: Database, tenant: Tenant) -> None:
    add_staff(db, tenant.company_id, "eve@acme.example", "Eve")

    def run(*args: str) -> dict[str, object]:
        out = subprocess.run([sys.executable, "-m", "bridge", "--config", str(settings_file),
                              "app-password", *args, "--json"], cwd=ROOT, capture_output=True,
                             text=True, check=True)
        result: dict[str, object] = json.loads(out.stdout)
        return result

    created = run("create", "--staff", "EVE@acme.example", "--label", "laptop")
    assert created["username"] == "eve@acme.example" and isinstance(created["password"], str)
    listed = run("list", "--staff", "eve@acme.example")
    assert [p["label"] for p in listed["items"]] == ["test", "laptop"]  # type: ignore[index]
    revoked = run("revoke", "--staff", "eve@acme.example", str(created["id"]))
    assert revoked["revoked_at"]


@pytest.fixture
def settings_file(tmp_path: Path, db_url: str) -> Path:
    path = tmp_path / "calbridge.toml"
    path.write_text(f'[database]\nurl = "{db_url}"\n[security]\nsecret_key = "{"s" * 40}"\n')
    return path


def test_two_companies_do_not_share_login(db: Database, settings: object) -> None:
    from bridge.config import Settings

    assert isinstance(settings, Settings)
    t = make_tenant(db, settings, "third")
    add_staff(db, t.company_id, "x@third.example")
    with pytest.raises(Exception):  # noqa: B017 - the email is the login: unique globally
        add_staff(db, t.company_id, "x@third.example")


def test_oversized_chunked_body_is_413(live: LiveServer, anna: StaffLogin, db: Database) -> None:
    import requests

    def body() -> object:
        head = EVENT.format(uid="chunked").split("SUMMARY")[0]
        yield head.encode()
        for _ in range(40):
            yield ("X-PAD:" + "a" * 9000 + "\r\n").encode()

    before = written(db)
    response = requests.put(live.url + anna.calendar_path + "chunked.ics", data=body(),
                            auth=(anna.email, anna.password), timeout=30,
                            headers={"Content-Type": "text/calendar"})
    assert response.status_code == 413
    assert written(db) == before


def test_principal_properties_for_ios_and_davx5(live: LiveServer, anna: StaffLogin) -> None:
    body = ('<?xml version="1.0"?><D:propfind xmlns:D="DAV:" '
            'xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop><D:current-user-principal/>'
            "<C:calendar-home-set/><D:principal-URL/><D:resourcetype/></D:prop></D:propfind>")
    response = raw(live, anna, "PROPFIND", "/dav/anna@acme.example/", body,
                   {"Depth": "0", "Content-Type": "application/xml"})
    assert response.status_code == 207
    home = "<href>/dav/anna%40acme.example/</href>"
    assert response.text.count(home) >= 3  # the response, the principal, the home set
    assert "calendar-home-set" in response.text and "principal" in response.text


def test_proppatch_sets_name_and_colour_not_components(
        live: LiveServer, anna: StaffLogin) -> None:
    body = ('<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" '
            'xmlns:C="urn:ietf:params:xml:ns:caldav" xmlns:I="http://apple.com/ns/ical/">'
            "<D:set><D:prop><D:displayname>Work</D:displayname>"
            "<I:calendar-color>#FF0000FF</I:calendar-color>"
            "<C:supported-calendar-component-set><C:comp name=\"VTODO\"/>"
            "</C:supported-calendar-component-set></D:prop></D:set></D:propertyupdate>")
    raw(live, anna, "PROPPATCH", anna.calendar_path, body, {"Content-Type": "application/xml"})
    query = ('<?xml version="1.0"?><D:propfind xmlns:D="DAV:" '
             'xmlns:C="urn:ietf:params:xml:ns:caldav" xmlns:I="http://apple.com/ns/ical/">'
             "<D:prop><D:displayname/><I:calendar-color/><C:supported-calendar-component-set/>"
             "</D:prop></D:propfind>")
    text = raw(live, anna, "PROPFIND", anna.calendar_path, query,
               {"Depth": "0", "Content-Type": "application/xml"}).text
    assert ">Work<" in text and "#FF0000FF" in text
    assert 'name="VEVENT"' in text and 'name="VTODO"' not in text


def test_failed_logins_are_limited_per_address_too(
        live: LiveServer, anna: StaffLogin) -> None:
    for i in range(10):  # ten different (unknown) users from one address
        stranger = StaffLogin(0, 0, f"guess{i}@acme.example", "nope")
        assert raw(live, stranger, "PROPFIND", anna.calendar_path).status_code == 401
    assert raw(live, anna, "PROPFIND", anna.calendar_path, "",
               {"Depth": "0"}).status_code == 401


@pytest.fixture
def proxied(settings: Settings, tenant: Tenant) -> Iterator[LiveServer]:
    server = LiveServer(settings.replace(server={"trust_proxy": True}))
    server.start()
    yield server
    server.stop()


def test_behind_a_proxy_an_invented_first_hop_does_not_evade_the_address_limit(
        proxied: LiveServer, anna: StaffLogin) -> None:
    # our proxy appends the address it saw; whatever comes before is the client's
    for i in range(10):
        stranger = StaffLogin(0, 0, f"guess{i}@acme.example", "nope")
        assert raw(proxied, stranger, "PROPFIND", anna.calendar_path, "",
                   {"X-Forwarded-For": f"10.0.0.{i}, 203.0.113.9"}).status_code == 401
    refused = raw(proxied, anna, "PROPFIND", anna.calendar_path, "",
                  {"Depth": "0", "X-Forwarded-For": "10.9.9.9, 203.0.113.9"})
    assert refused.status_code == 401
    other = raw(proxied, anna, "PROPFIND", anna.calendar_path, "",
                {"Depth": "0", "X-Forwarded-For": "203.0.113.9, 198.51.100.4"})
    assert other.status_code == 207
