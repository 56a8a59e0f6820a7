"""The `calbridge` command line: argument parsing and output only.

Every command accepts `--json` and prints one JSON document instead of text.
User mistakes (`BridgeError`) go to stderr as one line with exit code 2, no
traceback. Features add their own sub-commands through `COMMANDS` (a
`register(subparsers)` function each); the units of work they call are the
same ones the API uses.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import OperationalError

from bridge.config import Settings, load_settings
from bridge.db import repo
from bridge.db.engine import Database
from bridge.errors import BridgeError

Handler = Callable[[argparse.Namespace, Settings], Any]
Register = Callable[[argparse._SubParsersAction, argparse.ArgumentParser], None]  # type: ignore[type-arg]
ADMIN = repo.Actor("admin", "cli")


class Output:
    """What a command returns: data for --json and the text for people."""

    def __init__(self, data: Any, text: str) -> None:
        self.data, self.text = data, text


_OPEN: list[Database] = []


def database(settings: Settings) -> Database:
    """The database for one command; closed by `main` when the command ends."""
    db = Database(settings.database)
    _OPEN.append(db)
    return db


def _serve(args: argparse.Namespace, settings: Settings) -> Output:
    from bridge.server import serve

    overrides: dict[str, Any] = {}
    for key in ("host", "port", "workers"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    settings = settings.replace(server=overrides) if overrides else settings
    serve(settings, json_output=args.json)
    return Output({"stopped": True}, "calbridge stopped")


def _db_upgrade(args: argparse.Namespace, settings: Settings) -> Output:
    from bridge.db.migrate import current, upgrade

    database(settings)  # creates the SQLite folder
    upgrade(settings.database.url)
    rev = current(settings.database.url)
    return Output({"revision": rev}, f"database at revision {rev}")


def _demo(args: argparse.Namespace, settings: Settings) -> Output:
    from bridge.db.migrate import upgrade
    from bridge.demo import load_demo

    db = database(settings)
    upgrade(settings.database.url)
    info = load_demo(db, settings)
    return Output(info, info.pop("_text"))


def _company_create(args: argparse.Namespace, settings: Settings) -> Output:
    db = database(settings)
    with db.sync_session(write=True) as s:
        c = repo.create_company(s, args.slug, args.name or args.slug, args.timezone, ADMIN)
        data = {"id": c.id, "slug": c.slug, "name": c.name, "timezone": c.timezone}
    return Output(data, f"created company {c.slug} ({c.name})")


def _apikey_create(args: argparse.Namespace, settings: Settings) -> Output:
    db = database(settings)
    with db.sync_session(write=True) as s:
        company = repo.get_company(s, args.company)
        row, key = repo.create_api_key(s, company.id, settings.secret(), args.label)
        data = {"id": row.id, "company": company.slug, "prefix": row.prefix, "key": key}
    return Output(data, f"API key for {args.company} (shown once, store it now):\n{key}")


def _staff_add(args: argparse.Namespace, settings: Settings) -> Output:
    db = database(settings)
    with db.sync_session(write=True) as s:
        company = repo.get_company(s, args.company)
        group_ids = [repo.get_group_by_slug(s, company.id, g).id for g in args.group or []]
        payload: dict[str, Any] = {"email": args.email, "name": args.name, "group_ids": group_ids}
        if args.timezone:
            payload["timezone"] = args.timezone
        st = repo.create_staff(s, company.id, payload, ADMIN)
        data = {"id": st.id, "email": st.email, "name": st.name, "timezone": st.timezone,
                "groups": args.group or []}
    return Output(data, f"added {st.name} <{st.email}> ({st.timezone}) to {args.company}")


def _group_add(args: argparse.Namespace, settings: Settings) -> Output:
    db = database(settings)
    with db.sync_session(write=True) as s:
        company = repo.get_company(s, args.company)
        g = repo.create_group(s, company.id, {"slug": args.slug, "name": args.name or args.slug},
                              ADMIN)
        data = {"id": g.id, "slug": g.slug, "name": g.name}
    return Output(data, f"created group {g.slug} in {args.company}")


def _config_reference(args: argparse.Namespace, settings: Settings) -> Output:
    from bridge.config import reference

    return Output({"reference": reference()}, reference())


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print one JSON document")
    common.add_argument("--config", default=argparse.SUPPRESS, metavar="FILE",
                        help="config file (default: config/calbridge.toml)")
    parser = argparse.ArgumentParser(prog="calbridge", parents=[common],
                                     description="calbridge feed and CalDAV bridge server")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", parents=[common], help="run the server")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--workers", type=int, help="worker processes sharing the port")
    p.set_defaults(func=_serve)

    p = sub.add_parser("demo", parents=[common], help="load demo data (idempotent) and print it")
    p.set_defaults(func=_demo)

    db = sub.add_parser("db", parents=[common], help="database commands")
    dbsub = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    p = dbsub.add_parser("upgrade", parents=[common], help="apply migrations")
    p.set_defaults(func=_db_upgrade)

    company = sub.add_parser("company", parents=[common], help="companies (tenants)")
    csub = company.add_subparsers(dest="company_command", required=True, metavar="COMMAND")
    p = csub.add_parser("create", parents=[common], help="create a company")
    p.add_argument("slug")
    p.add_argument("--name")
    p.add_argument("--timezone", default="UTC")
    p.set_defaults(func=_company_create)

    apikey = sub.add_parser("apikey", parents=[common], help="API keys")
    asub = apikey.add_subparsers(dest="apikey_command", required=True, metavar="COMMAND")
    p = asub.add_parser("create", parents=[common], help="create an API key (printed once)")
    p.add_argument("--company", required=True, metavar="SLUG")
    p.add_argument("--label", default="")
    p.set_defaults(func=_apikey_create)

    staff = sub.add_parser("staff", parents=[common], help="staff members")
    ssub = staff.add_subparsers(dest="staff_command", required=True, metavar="COMMAND")
    p = ssub.add_parser("add", parents=[common], help="add a staff member")
    p.add_argument("--company", required=True, metavar="SLUG")
    p.add_argument("--email", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--timezone")
    p.add_argument("--group", action="append", metavar="SLUG")
    p.set_defaults(func=_staff_add)

    group = sub.add_parser("group", parents=[common], help="groups")
    gsub = group.add_subparsers(dest="group_command", required=True, metavar="COMMAND")
    p = gsub.add_parser("add", parents=[common], help="create a group")
    p.add_argument("--company", required=True, metavar="SLUG")
    p.add_argument("--slug", required=True)
    p.add_argument("--name")
    p.set_defaults(func=_group_add)

    cfg = sub.add_parser("config", parents=[common], help="configuration")
    cfgsub = cfg.add_subparsers(dest="config_command", required=True, metavar="COMMAND")
    p = cfgsub.add_parser("reference", parents=[common], help="print the config reference")
    p.set_defaults(func=_config_reference)

    for register in COMMANDS:
        register(sub, common)
    return parser


# Feature packages append their `register(subparsers, common)` here.
COMMANDS: list[Register] = []


def _load_feature_commands() -> None:
    # Imported for their side effect of appending to COMMANDS.
    import bridge.changes.cli
    import bridge.dav.cli
    import bridge.feeds.cli
    import bridge.notify.webhooks_cli
    import bridge.sync.cli
    import bridge.web.cli  # noqa: F401


def main(argv: list[str] | None = None) -> int:
    _load_feature_commands()
    parser = build_parser()
    args = parser.parse_args(argv)
    args.json = getattr(args, "json", False)
    try:
        settings = load_settings(getattr(args, "config", None))
        out = args.func(args, settings)
    except BridgeError as exc:
        if args.json:
            print(json.dumps({"error": exc.title, "detail": exc.message, "field": exc.field}),
                  file=sys.stderr)
        else:
            print(f"calbridge: error: {exc.message}", file=sys.stderr)
        return 2
    except OperationalError as exc:
        print(f"calbridge: error: cannot use the database: {exc.orig or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        while _OPEN:
            _OPEN.pop().sync_engine.dispose()
    if args.json:
        print(json.dumps(out.data, indent=2, default=str))
    else:
        print(out.text)
    return 0
