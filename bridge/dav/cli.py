"""`calbridge app-password create|list|revoke`: CalDAV logins from the command line.

Argument parsing and output only; the units of work are those of the API
(`bridge.dav.passwords`). Every command takes `--json`.
"""

from __future__ import annotations

import argparse
from typing import Any

from bridge import cli
from bridge.config import Settings
from bridge.dav import passwords
from bridge.dav.routes import PREFIX
from bridge.db import repo


def _create(args: argparse.Namespace, settings: Settings) -> cli.Output:
    db = cli.database(settings)
    with db.sync_session(write=True) as s:
        staff = repo.get_staff_by_email(s, None, args.staff)
        row, password = passwords.create(s, staff.company_id, staff.id, args.label, cli.ADMIN)
        data = passwords.app_password_json(row) | {
            "password": password, "username": staff.email,
            "caldav_url": f"{settings.base_url}{PREFIX}/",
        }
    text = (f"app password for {staff.email} (shown once, store it now):\n{password}\n"
            f"CalDAV URL: {data['caldav_url']}  user name: {staff.email}")
    return cli.Output(data, text)


def _list(args: argparse.Namespace, settings: Settings) -> cli.Output:
    db = cli.database(settings)
    with db.sync_session() as s:
        staff = repo.get_staff_by_email(s, None, args.staff)
        rows = [passwords.app_password_json(r)
                for r in passwords.list_for(s, staff.company_id, staff.id)]
    lines = [f"{r['id']}\t{r['label'] or '-'}\tcreated {r['created_at']}\t"
             f"last used {r['last_used_at'] or 'never'}"
             + (f"\trevoked {r['revoked_at']}" if r["revoked_at"] else "") for r in rows]
    return cli.Output({"staff": staff.email, "items": rows},
                      "\n".join(lines) if lines else f"no app passwords for {staff.email}")


def _revoke(args: argparse.Namespace, settings: Settings) -> cli.Output:
    db = cli.database(settings)
    with db.sync_session(write=True) as s:
        staff = repo.get_staff_by_email(s, None, args.staff)
        row = passwords.revoke(s, staff.company_id, staff.id, args.id, cli.ADMIN)
        data = passwords.app_password_json(row)
    return cli.Output(data, f"revoked app password {row.id} of {staff.email}")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    top = sub.add_parser("app-password", parents=[common], help="CalDAV app passwords of staff")
    cmds = top.add_subparsers(dest="app_password_command", required=True, metavar="COMMAND")
    p = cmds.add_parser("create", parents=[common], help="issue an app password (shown once)")
    p.add_argument("--staff", required=True, metavar="EMAIL")
    p.add_argument("--label", default="", help="device name, e.g. 'iPhone'")
    p.set_defaults(func=_create)
    p = cmds.add_parser("list", parents=[common], help="list a staff member's app passwords")
    p.add_argument("--staff", required=True, metavar="EMAIL")
    p.set_defaults(func=_list)
    p = cmds.add_parser("revoke", parents=[common], help="revoke an app password")
    p.add_argument("--staff", required=True, metavar="EMAIL")
    p.add_argument("id", type=int)
    p.set_defaults(func=_revoke)


if register not in cli.COMMANDS:
    cli.COMMANDS.append(register)
