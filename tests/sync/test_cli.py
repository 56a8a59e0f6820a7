"""`calbridge calendar-link ...`: the same units of work as the API, --json
output, passwords never taken from argv, mistakes as one line on stderr."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from bridge.cli import main
from tests.conftest import ROOT, Tenant
from tests.sync.conftest import IcsSource


@pytest.fixture
def cli(db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> Any:
    monkeypatch.setenv("CALBRIDGE_DATABASE_URL", db_url)
    monkeypatch.setenv("CALBRIDGE_SECURITY_SECRET_KEY", "test-secret-" + "x" * 32)
    monkeypatch.setenv("CALBRIDGE_SYNC_ALLOW_PRIVATE_ADDRESSES", "true")
    monkeypatch.setenv("CALBRIDGE_ALERTS_EMAIL", "false")
    monkeypatch.chdir(ROOT)

    def run(*args: str) -> tuple[int, Any, str]:
        code = main([*args, "--json"])
        out, err = capsys.readouterr()
        return code, json.loads(out) if out else None, err

    return run


async def test_link_list_poll_update_remove(cli: Any, tenant: Tenant, ics: IcsSource,
                                            db: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from bridge.db import repo

    with db.sync_session(write=True) as s:
        repo.create_staff(s, tenant.company_id, {"email": "bo@acme.example", "name": "Bo"},
                          repo.Actor("admin"))
    code, link, err = cli("calendar-link", "add", "--company", "acme", "--staff",
                          "bo@acme.example", "--ics", ics.url, "--label", "Home")
    assert code == 0, err
    assert link["kind"] == "ics" and "secret-token" not in json.dumps(link)
    ics.add("x", *_times())
    # The command runs its own event loop: run it beside the test's (which serves the ICS).
    code, out, err = await asyncio.to_thread(cli, "calendar-link", "poll", "--company", "acme",
                                             str(link["id"]))
    assert code == 0, err
    assert out["polled"][0]["ok"] and out["polled"][0]["changed"]
    code, out, _ = cli("calendar-link", "list", "--company", "acme")
    assert [i["health"] for i in out["items"]] == ["ok"]
    code, out, _ = cli("calendar-link", "update", "--company", "acme", str(link["id"]),
                       "--label", "Private", "--interval", "600")
    assert (out["label"], out["interval_seconds"]) == ("Private", 600)
    code, out, _ = cli("calendar-link", "policy", "--company", "acme", "stop_booking")
    assert out["on_calendar_failure"] == "stop_booking"
    code, out, _ = cli("calendar-link", "remove", "--company", "acme", str(link["id"]))
    assert code == 0
    code, _, err = cli("calendar-link", "show", "--company", "acme", str(link["id"]))
    assert code == 2 and "no calendar link" in err


def test_caldav_password_comes_from_the_environment(cli: Any, tenant: Tenant, db: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from bridge.db import repo

    with db.sync_session(write=True) as s:
        repo.create_staff(s, tenant.company_id, {"email": "bo@acme.example", "name": "Bo"},
                          repo.Actor("admin"))
    args = ("calendar-link", "add", "--company", "acme", "--staff", "bo@acme.example",
            "--caldav", "https://dav.example.com/", "--username", "bo")
    code, _, err = cli(*args)
    assert code == 2 and "--password-env" in err
    code, _, err = cli(*args, "--password-env", "NOPE_UNSET")
    assert code == 2 and "NOPE_UNSET" in err
    monkeypatch.setenv("DAV_PW", "s3cret-app-pw")
    code, link, err = cli(*args, "--password-env", "DAV_PW", "--add-appointments")
    assert code == 0, err
    assert link["add_appointments"] and "s3cret" not in json.dumps(link)


def _times() -> tuple[Any, Any]:
    import datetime as dt

    start = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=2)
    return start, start + dt.timedelta(hours=1)
