"""The plugins loaded by a stock Radicale from its own config file (no calbridge server)."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import radicale
import radicale.config

from bridge.db.engine import Database
from radicale_plugins import backend as plugin_backend
from tests.dav.conftest import StaffLogin, create_appointment


def call(app: Any, method: str, path: str, who: StaffLogin, body: str = "",
         **headers: str) -> tuple[str, str]:
    environ = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "SCRIPT_NAME": "", "QUERY_STRING": "",
        "SERVER_NAME": "localhost", "SERVER_PORT": "5232", "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1", "wsgi.input": io.BytesIO(body.encode()),
        "wsgi.errors": io.StringIO(), "wsgi.url_scheme": "http",
        "CONTENT_LENGTH": str(len(body.encode())),
        "HTTP_AUTHORIZATION": "Basic " + base64.b64encode(
            f"{who.email}:{who.password}".encode()).decode(),
        **{f"HTTP_{k.upper()}": v for k, v in headers.items()},
    }
    status: list[str] = []
    chunks = app(environ, lambda s, h, e=None: status.append(s))
    return status[0], b"".join(chunks).decode()


def test_stock_radicale_loads_the_plugins_from_its_config(
        tmp_path: Path, db_url: str, anna: StaffLogin, db: Database) -> None:
    create_appointment(db, anna.company_id, anna.staff_id)
    config = tmp_path / "radicale.conf"
    config.write_text(
        "[auth]\ntype = radicale_plugins.auth\ndelay = 0\n"
        "[rights]\ntype = radicale_plugins.rights\n"
        f"[storage]\ntype = radicale_plugins.storage\ndatabase_url = {db_url}\n"
        "[web]\ntype = none\n")
    app = radicale.Application(radicale.config.load([(str(config), False)]))
    try:
        status, text = call(app, "PROPFIND", f"/{anna.email}/calendar/", anna, DEPTH="1")
        assert status.startswith("207")
        assert text.count(".ics</href>") == 1
        status, text = call(app, "GET", f"/{anna.email}/calendar/", anna)
        assert status.startswith("200") and "SUMMARY:Haircut – Carla Diaz" in text
    finally:
        plugin_backend.forget(db_url)
