"""`calbridge webhook …` and `calbridge changes …`: the same units of work as
the API, --json everywhere, mistakes as one line on stderr (exit 2)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from bridge.cli import main
from bridge.db.engine import Database
from bridge.db.models import ChangeEntry
from tests.conftest import ROOT, Tenant


@pytest.fixture
def run(db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> Any:
    monkeypatch.setenv("CALBRIDGE_DATABASE_URL", db_url)
    monkeypatch.setenv("CALBRIDGE_SECURITY_SECRET_KEY", "test-secret-" + "x" * 32)
    monkeypatch.setenv("CALBRIDGE_WEBHOOKS_ALLOW_NETWORKS", "127.0.0.1/32")
    monkeypatch.chdir(ROOT)

    def cli(*args: str) -> tuple[int, Any, str]:
        code = main([*args, "--json"])
        out, err = capsys.readouterr()
        return code, json.loads(out) if out else None, err

    return cli


def test_webhook_commands(run: Any, tenant: Tenant) -> None:
    code, ep, _ = run("webhook", "create", "--company", "acme", "--url",
                      "http://127.0.0.1:9/hook", "--event", "appointment.*", "--event",
                      "staff.created")
    assert code == 0 and ep["secret"].startswith("whsec_")
    assert ep["event_types"] == ["appointment.*", "staff.created"]
    wid = str(ep["id"])
    code, listing, _ = run("webhook", "list", "--company", "acme")
    assert [e["id"] for e in listing["items"]] == [ep["id"]]
    code, updated, _ = run("webhook", "update", wid, "--company", "acme", "--event", "*")
    assert code == 0 and updated["event_types"] == ["*"]
    code, off, _ = run("webhook", "disable", wid, "--company", "acme")
    assert off["enabled"] is False
    code, _, err = run("webhook", "test", wid, "--company", "acme")
    assert code == 2 and "disabled" in err
    code, on, _ = run("webhook", "enable", wid, "--company", "acme")
    assert on["enabled"] is True
    code, queued, _ = run("webhook", "test", wid, "--company", "acme")
    assert code == 0 and queued["kind"] == "test" and queued["status"] == "pending"
    code, log, _ = run("webhook", "deliveries", wid, "--company", "acme")
    assert [d["event_type"] for d in log["items"]] == ["webhook.test"]
    code, rotated, _ = run("webhook", "rotate-secret", wid, "--company", "acme")
    assert rotated["secret"] != ep["secret"]
    code, replayed, _ = run("webhook", "replay", wid, "--company", "acme", "--from-seq", "1",
                            "--to-seq", "3")
    assert code == 0 and replayed["queued"] == 3  # company, api key, endpoint created
    code, _, _ = run("webhook", "delete", wid, "--company", "acme")
    assert code == 0
    code, listing, _ = run("webhook", "list", "--company", "acme")
    assert listing["items"] == []


def test_webhook_command_mistakes(run: Any, tenant: Tenant) -> None:
    for args, words in ((("create", "--company", "acme", "--url", "http://10.0.0.1/"), "private"),
                        (("create", "--company", "acme", "--url", "https://a.example",
                          "--event", "bogus"), "unknown event type"),
                        (("create", "--company", "nope", "--url", "https://a.example"), "nope"),
                        (("disable", "99", "--company", "acme"), "no webhook endpoint")):
        code, out, err = run("webhook", *args)
        assert code == 2 and out is None, args
        assert words in err and "Traceback" not in err


def test_changes_list_and_purge(run: Any, tenant: Tenant, db: Database) -> None:
    code, page, _ = run("changes", "list", "--company", "acme", "--limit", "1")
    assert code == 0 and [e["type"] for e in page["items"]] == ["company.created"]
    assert page["has_more"] is True
    code, page, _ = run("changes", "list", "--company", "acme", "--after", page["next_cursor"])
    assert [e["type"] for e in page["items"]] == ["api_key.created"]
    code, _, err = run("changes", "list", "--company", "acme", "--after", "5.deadbeef")
    assert code == 2 and "cursor" in err
    with db.sync_session(write=True) as s:
        s.execute(update(ChangeEntry).values(
            created_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=100)))
    code, purged, _ = run("changes", "purge")
    assert code == 0 and purged == {"changes": 2, "deliveries": 0}
