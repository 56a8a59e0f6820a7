"""The calbridge command line: every command speaks --json, mistakes are one
line on stderr with a non-zero exit and no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bridge.app import create_app
from bridge.cli import main
from tests.conftest import ROOT, make_settings


@pytest.fixture
def cli(db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    monkeypatch.setenv("CALBRIDGE_DATABASE_URL", db_url)
    monkeypatch.setenv("CALBRIDGE_SECURITY_SECRET_KEY", "test-secret-" + "x" * 32)
    monkeypatch.chdir(ROOT)

    def run(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, Any, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        try:
            data = json.loads(out) if "--json" in args and out else out
        except ValueError:
            data = out
        return code, data, err

    return run


def test_company_apikey_staff_commands(cli: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, company, _ = cli("company", "create", "acme", "--name", "Acme Salon",
                           "--timezone", "Europe/Berlin", "--json", capsys=capsys)
    assert code == 0 and company["slug"] == "acme" and company["timezone"] == "Europe/Berlin"
    code, _, _ = cli("group", "add", "--company", "acme", "--slug", "cutters", "--json",
                         capsys=capsys)
    assert code == 0
    code, staff, _ = cli("staff", "add", "--company", "acme", "--email", "Anna@Example.com",
                         "--name", "Anna", "--group", "cutters", "--json", capsys=capsys)
    assert code == 0
    assert (staff["email"], staff["timezone"], staff["groups"]) == (
        "anna@example.com", "Europe/Berlin", ["cutters"])
    code, key, _ = cli("apikey", "create", "--company", "acme", "--json", capsys=capsys)
    assert code == 0 and key["key"].startswith("cbk_")
    code, text, _ = cli("company", "create", "other", capsys=capsys)
    assert code == 0 and "created company other" in text


async def test_printed_api_key_works_against_the_api(cli: Any, capsys: pytest.CaptureFixture[str],
                                                     db_url: str, tmp_path: Path,
                                                     aiohttp_client: Any) -> None:
    cli("company", "create", "acme", capsys=capsys)
    cli("staff", "add", "--company", "acme", "--email", "a@example.com", "--name", "A", capsys=capsys)
    _, key, _ = cli("apikey", "create", "--company", "acme", "--json", capsys=capsys)
    client = await aiohttp_client(create_app(make_settings(db_url, tmp_path)))
    resp = await client.get("/api/v1/staff", headers={"Authorization": f"Bearer {key['key']}"})
    assert [s["email"] for s in (await resp.json())["items"]] == ["a@example.com"]


@pytest.mark.parametrize(("args", "message"), [
    (("company", "create", "acme"), "exists"),
    (("company", "create", "Bad Slug"), "lower-case"),
    (("staff", "add", "--company", "nope", "--email", "a@b.example", "--name", "A"), "no company"),
    (("staff", "add", "--company", "acme", "--email", "bad", "--name", "A"), "email"),
    (("staff", "add", "--company", "acme", "--email", "a@b.example", "--name", "A",
      "--timezone", "Moon/Base"), "unknown time zone"),
    (("staff", "add", "--company", "acme", "--email", "a@b.example", "--name", "A",
      "--group", "ghosts"), "no group"),
    (("apikey", "create", "--company", "nope"), "no company"),
])
def test_user_mistakes_are_one_line_without_traceback(cli: Any, capsys: pytest.CaptureFixture[str],
                                                     args: tuple[str, ...], message: str) -> None:
    cli("company", "create", "acme", capsys=capsys)
    code, out, err = cli(*args, capsys=capsys)
    assert code == 2
    assert out == ""
    assert message in err and "Traceback" not in err
    assert err.count("\n") == 1
    code, _, err = cli(*args, "--json", capsys=capsys)
    assert code == 2 and json.loads(err)["detail"]


def test_demo_is_idempotent_and_prints_what_to_try(cli: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, first, _ = cli("demo", "--json", capsys=capsys)
    assert code == 0
    assert first["appointments_created"] >= 200
    assert len(first["staff"]) == 5
    assert len({s["timezone"] for s in first["staff"]}) >= 2
    code, second, _ = cli("demo", "--json", capsys=capsys)
    assert second["appointments_created"] == 0
    assert second["api_key"] == first["api_key"]
    code, text, _ = cli("demo", capsys=capsys)
    assert first["api_key"] in text and "anna@demo.example.com" in text


def test_installed_console_script_runs(tmp_path: Path) -> None:
    env = {**os.environ, "CALBRIDGE_DATABASE_URL": f"sqlite:///{tmp_path}/c.db"}
    exe = Path(sys.executable).parent / "calbridge"
    proc = subprocess.run([str(exe), "db", "upgrade", "--json"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["revision"]
    proc = subprocess.run([str(exe), "--config", str(tmp_path / "missing.toml"), "db", "upgrade"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "missing.toml does not exist" in proc.stderr and "Traceback" not in proc.stderr
