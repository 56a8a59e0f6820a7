"""`calbridge feed create|list|rotate|revoke` and the demo's feed links."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bridge.cli import main
from tests.conftest import ROOT
from tests.feeds.conftest import Salon, run


@pytest.fixture
def cli(db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    monkeypatch.setenv("CALBRIDGE_DATABASE_URL", db_url)
    monkeypatch.setenv("CALBRIDGE_SECURITY_SECRET_KEY", "test-secret-" + "x" * 32)
    monkeypatch.chdir(ROOT)

    def run(*args: str) -> tuple[int, Any, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, json.loads(out) if "--json" in args and code == 0 else out, err

    return run


def path_of(url: str) -> str:
    return urllib.parse.urlsplit(url).path


async def test_feed_commands(cli: Any, salon: Salon, client: TestClient[Any, Any]) -> None:
    await run(salon.book, "a", salon.anna, 1, 10)
    code, staff_link, _ = await run(cli, "feed", "create", "--company", "acme", "--staff",
                              "Anna@Salon.example", "--privacy", "busy", "--json")
    assert code == 0
    assert (staff_link["scope"], staff_link["privacy"]) == ("staff", "busy")
    assert set(staff_link["urls"]) == {"https", "webcal", "google", "outlook"}
    code, group_link, _ = await run(cli, "feed", "create", "--company", "acme", "--group", "stylists",
                              "--json")
    assert code == 0 and group_link["scope"] == "group"
    code, text, _ = await run(cli, "feed", "create", "--company", "acme", "--all")
    assert code == 0
    assert "webcal://" in text and "calendar.google.com" in text and "outlook" in text

    code, listed, _ = await run(cli, "feed", "list", "--company", "acme", "--json")
    assert [item["scope"] for item in listed] == ["staff", "group", "company"]
    assert listed[0]["urls"] == staff_link["urls"]
    assert (await client.get(path_of(staff_link["urls"]["https"]))).status == 200

    code, rotated, _ = await run(cli, "feed", "rotate", "--company", "acme", str(staff_link["id"]), "--json")
    assert code == 0 and rotated["urls"]["https"] != staff_link["urls"]["https"]
    assert (await client.get(path_of(staff_link["urls"]["https"]))).status == 404
    assert (await client.get(path_of(rotated["urls"]["https"]))).status == 200

    code, out, _ = await run(cli, "feed", "revoke", "--company", "acme", str(group_link["id"]))
    assert code == 0 and "revoked" in out
    assert (await client.get(path_of(group_link["urls"]["https"]))).status == 404
    code, listed, _ = await run(cli, "feed", "list", "--company", "acme", "--include-revoked", "--json")
    assert [item["status"] for item in listed] == ["active", "revoked", "active"]


def test_feed_command_mistakes_are_one_line(cli: Any, salon: Salon) -> None:
    code, _, err = cli("feed", "create", "--company", "acme", "--staff", "nobody@x.example")
    assert code == 2 and err.count("\n") == 1 and "nobody@x.example" in err
    code, _, err = cli("feed", "rotate", "--company", "acme", "12345")
    assert code == 2 and "Traceback" not in err
    with pytest.raises(SystemExit):
        cli("feed", "create", "--company", "acme", "--staff", "a@b.c", "--all")


async def test_demo_prints_working_feed_urls(cli: Any, db_url: str, tmp_path: Path,
                                             aiohttp_client: Any) -> None:
    from bridge.app import create_app
    from tests.conftest import make_settings

    code, info, _ = await run(cli, "demo", "--json")
    assert code == 0
    feeds = info["feeds"]
    assert len(feeds) >= 4
    code, again, _ = await run(cli, "demo", "--json")
    assert again["feeds"] == feeds  # idempotent: the same URLs
    settings = make_settings(db_url, tmp_path)
    client = await aiohttp_client(create_app(settings))
    for line in feeds:
        url = line.rsplit(": ", 1)[1]
        resp = await client.get(path_of(url))
        assert resp.status == 200, line
        assert (await resp.read()).count(b"BEGIN:VEVENT") > 0, line
