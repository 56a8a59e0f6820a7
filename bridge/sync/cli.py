"""`calbridge calendar-link ...` and `calbridge availability`: the same
units of work as the API, from the command line.

    calbridge calendar-link add --company demo --staff anna@demo.example.com \
        --ics https://calendar.example.com/secret.ics
    calbridge calendar-link add --company demo --staff anna@… --caldav https://dav.example.com/ \
        --username anna --password-env CALDAV_PASSWORD [--calendar-url URL] [--add-appointments]
    calbridge calendar-link discover --caldav URL --username U --password-env VAR
    calbridge calendar-link list|show|update|remove|poll
    calbridge calendar-link policy --company demo [keep_booking|stop_booking]

Passwords are read from an environment variable or stdin, never from argv
(where `ps` and shell history would keep them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import getpass
import os
from collections.abc import Iterator
from typing import Any

from sqlalchemy.orm import Session

from bridge import cli
from bridge.cli import ADMIN, Output, database
from bridge.config import Settings
from bridge.db import repo
from bridge.errors import Invalid
from bridge.sync import service, sources


@contextlib.contextmanager
def _session(settings: Settings, *, write: bool = False) -> Iterator[Session]:
    """One transaction; the database is closed by `bridge.cli.main` when the command ends."""
    db = database(settings)
    with db.sync_session(write=write) as s:
        yield s


def _password(args: argparse.Namespace, required: bool) -> str | None:
    if getattr(args, "password_env", None):
        value = os.environ.get(args.password_env)
        if not value:
            raise Invalid(f"environment variable {args.password_env} is empty or unset",
                          field="password")
        return value
    if getattr(args, "password_stdin", False):
        return getpass.getpass("password: ") if os.isatty(0) else input().rstrip("\n")
    if required:
        raise Invalid("give the password with --password-env VAR or --password-stdin",
                      field="password")
    return None


def _staff_id(s: Any, company_id: int, ref: str) -> int:
    if ref.isdigit():
        return repo.get_staff(s, company_id, int(ref)).id
    return repo.get_staff_by_email(s, company_id, ref).id


def _fmt(link: dict[str, Any]) -> str:
    flags = "+".join(f for f, on in (("conflicts", link["check_conflicts"]),
                                      ("add", link["add_appointments"])) if on)
    return (f"#{link['id']} staff {link['staff_id']} {link['kind']} {link['url']} [{flags}] "
            f"health={link['health']}" + (f" error={link['last_error']}"
                                          if link["last_error"] else ""))


def _add(args: argparse.Namespace, settings: Settings) -> Output:
    payload: dict[str, Any] = {"label": args.label or "",
                               "check_conflicts": not args.no_conflicts,
                               "add_appointments": args.add_appointments}
    if args.interval:
        payload["interval_seconds"] = args.interval
    if args.ics:
        payload.update(kind="ics", url=args.ics)
    elif args.caldav:
        payload.update(kind="caldav", server_url=args.caldav, username=args.username or "",
                       password=_password(args, True))
        if args.calendar_url:
            payload["calendar_url"] = args.calendar_url
    else:
        raise Invalid("give --ics URL or --caldav URL", field="kind")
    with _session(settings, write=True) as s:
        company = repo.get_company(s, args.company)
        sid = _staff_id(s, company.id, args.staff)
        data = service.link_json(service.create_link(s, settings, company.id, sid, payload,
                                                     ADMIN))
    return Output(data, "linked " + _fmt(data))


def _list(args: argparse.Namespace, settings: Settings) -> Output:
    with _session(settings) as s:
        company = repo.get_company(s, args.company)
        sid = _staff_id(s, company.id, args.staff) if args.staff else None
        items = [service.link_json(x) for x in service.list_links(s, company.id, sid)]
    return Output({"items": items}, "\n".join(_fmt(i) for i in items) or "no calendar links")


def _find(s: Any, company_slug: str, link_id: int) -> Any:
    company = repo.get_company(s, company_slug)
    return service.get_link(s, company.id, None, link_id)


def _show(args: argparse.Namespace, settings: Settings) -> Output:
    with _session(settings) as s:
        data = service.link_json(_find(s, args.company, args.id))
    return Output(data, "\n".join(f"{k}: {v}" for k, v in data.items()))


def _update(args: argparse.Namespace, settings: Settings) -> Output:
    payload: dict[str, Any] = {}
    for key in ("label", "url", "username", "calendar_url"):
        if getattr(args, key, None) is not None:
            payload[key] = getattr(args, key)
    if args.interval is not None:
        payload["interval_seconds"] = args.interval
    for key in ("check_conflicts", "add_appointments", "enabled"):
        value = getattr(args, key)
        if value is not None:
            payload[key] = value == "on"
    pw = _password(args, False)
    if pw is not None:
        payload["password"] = pw
    with _session(settings, write=True) as s:
        link = _find(s, args.company, args.id)
        data = service.link_json(service.update_link(s, settings, link.company_id,
                                                     link.staff_id, link.id, payload, ADMIN))
    return Output(data, "updated " + _fmt(data))


def _remove(args: argparse.Namespace, settings: Settings) -> Output:
    with _session(settings, write=True) as s:
        link = _find(s, args.company, args.id)
        service.delete_link(s, link.company_id, link.staff_id, link.id, ADMIN)
    return Output({"deleted": args.id}, f"removed calendar link #{args.id}")


def _poll(args: argparse.Namespace, settings: Settings) -> Output:
    """Run one poller tick now (all due links, or one link made due)."""
    from bridge.sync.scheduler import Syncer

    _check_poll_args(args)
    db = database(settings)
    if args.id is not None:
        with db.sync_session(write=True) as s:
            link = _find(s, args.company, args.id)
            link.next_poll_at = dt.datetime.now(dt.UTC)
            link.push_error = ""

    async def run() -> list[Any]:
        syncer = Syncer(settings, db)
        try:
            return await syncer.run_once()
        finally:
            await syncer.close()
            await db.dispose()

    reports = asyncio.run(run())
    data = [{"link_id": r.link_id, "ok": r.outcome.ok, "changed": r.outcome.read_changed,
             "error": r.outcome.error.message if r.outcome.error else None,
             "notice": r.notice.event if r.notice else None, "pushed": r.pushed}
            for r in reports]
    text = "\n".join(f"#{d['link_id']}: " + ("ok" if d["ok"] else f"error: {d['error']}")
                     + (" (changed)" if d["changed"] else "") for d in data)
    return Output({"polled": data}, text or "no calendar link was due")


def _discover(args: argparse.Namespace, settings: Settings) -> Output:
    server = sources.normalise_url(args.caldav, "server_url")
    password = _password(args, True)
    assert password is not None
    try:
        items = sources.discover(server, args.username, password, settings.sync.timeout_seconds)
    except sources.SourceError as exc:
        raise Invalid(exc.message, field="server_url") from None
    return Output({"items": items},
                  "\n".join(f"{i['url']}  {i['name']}" for i in items) or "no event calendars")


def _policy(args: argparse.Namespace, settings: Settings) -> Output:
    with _session(settings, write=True) as s:
        company = repo.get_company(s, args.company)
        if args.value:
            data = service.set_policy(s, settings, company.id,
                                      {"on_calendar_failure": args.value}, ADMIN)
        else:
            data = service.get_policy(s, company.id)
    return Output(data, f"on_calendar_failure = {data['on_calendar_failure']}")


def _secret_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--password-env", metavar="VAR", help="read the password from $VAR")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    top = sub.add_parser("calendar-link", parents=[common],
                         help="external calendars linked by staff (ICS URLs, CalDAV accounts)")
    s2 = top.add_subparsers(dest="calendar_link_command", required=True, metavar="COMMAND")

    p = s2.add_parser("add", parents=[common], help="link an ICS URL or a CalDAV calendar")
    p.add_argument("--company", required=True, metavar="SLUG")
    p.add_argument("--staff", required=True, metavar="EMAIL|ID")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--ics", metavar="URL")
    src.add_argument("--caldav", metavar="SERVER_URL")
    p.add_argument("--username")
    p.add_argument("--calendar-url")
    p.add_argument("--label")
    p.add_argument("--interval", type=int, metavar="SECONDS")
    p.add_argument("--add-appointments", action="store_true",
                   help="write confirmed appointments to this calendar (CalDAV)")
    p.add_argument("--no-conflicts", action="store_true",
                   help="do not read busy time from this calendar")
    _secret_args(p)
    p.set_defaults(func=_add)

    p = s2.add_parser("list", parents=[common], help="list calendar links")
    p.add_argument("--company", required=True, metavar="SLUG")
    p.add_argument("--staff", metavar="EMAIL|ID")
    p.set_defaults(func=_list)

    for name, func, helptext in (("show", _show, "show one link and its health"),
                                 ("remove", _remove, "unlink a calendar")):
        p = s2.add_parser(name, parents=[common], help=helptext)
        p.add_argument("--company", required=True, metavar="SLUG")
        p.add_argument("id", type=int)
        p.set_defaults(func=func)

    p = s2.add_parser("update", parents=[common], help="change a link (new password, flags)")
    p.add_argument("--company", required=True, metavar="SLUG")
    p.add_argument("id", type=int)
    p.add_argument("--label")
    p.add_argument("--url")
    p.add_argument("--username")
    p.add_argument("--calendar-url")
    p.add_argument("--interval", type=int, metavar="SECONDS")
    for flag in ("check-conflicts", "add-appointments", "enabled"):
        p.add_argument(f"--{flag}", choices=("on", "off"))
    _secret_args(p)
    p.set_defaults(func=_update)

    p = s2.add_parser("poll", parents=[common], help="poll due links now (or one link)")
    p.add_argument("--company", metavar="SLUG")
    p.add_argument("id", type=int, nargs="?")
    p.set_defaults(func=_poll)

    p = s2.add_parser("discover", parents=[common], help="list a CalDAV account's calendars")
    p.add_argument("--caldav", required=True, metavar="SERVER_URL")
    p.add_argument("--username", required=True)
    _secret_args(p)
    p.set_defaults(func=_discover)

    p = s2.add_parser("policy", parents=[common],
                      help="show or set on_calendar_failure (keep_booking|stop_booking)")
    p.add_argument("--company", required=True, metavar="SLUG")
    p.add_argument("value", nargs="?", choices=("keep_booking", "stop_booking"))
    p.set_defaults(func=_policy)


def _check_poll_args(args: argparse.Namespace) -> None:
    if args.id is not None and not args.company:
        raise Invalid("give --company with a link id", field="company")


cli.COMMANDS.append(register)
