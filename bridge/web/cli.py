"""`calbridge admin ...`: console accounts from the command line.

`admin create --company SLUG --email E` creates an admin of a company and
prints a one-time password (shown once, stored only as a scrypt hash);
`admin reset-password --email E` replaces a forgotten one the same way,
which also ends every session of that admin.
"""

from __future__ import annotations

import argparse
from typing import Any

from sqlalchemy import select

from bridge.cli import COMMANDS, Output, database
from bridge.config import Settings
from bridge.db.models import AdminUser
from bridge.errors import NotFound
from bridge.web import accounts
from bridge.web import demo as _demo  # noqa: F401  (registers the demo admin)


def _create(args: argparse.Namespace, settings: Settings) -> Output:
    db = database(settings)
    with db.sync_session(write=True) as s:
        admin, password = accounts.create_admin(s, args.company, args.email)
        data = {"id": admin.id, "company": args.company, "email": admin.email,
                "password": password, "login_url": f"{settings.base_url}/admin/login"}
    return Output(data, f"admin {admin.email} of {args.company} created.\n"
                        f"One-time password (shown once, store it now): {password}\n"
                        f"Sign in at {data['login_url']}")


def _reset(args: argparse.Namespace, settings: Settings) -> Output:
    db = database(settings)
    password = accounts.new_password()
    with db.sync_session(write=True) as s:
        admin = s.execute(select(AdminUser).where(
            AdminUser.email == args.email.strip().lower())).scalar_one_or_none()
        if admin is None:
            raise NotFound(f"no admin with email {args.email!r}", field="email")
        accounts.set_password(s, admin.id, password)
        data: dict[str, Any] = {"id": admin.id, "email": admin.email, "password": password}
    return Output(data, f"new password for {admin.email} (shown once): {password}")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    admin = sub.add_parser("admin", parents=[common], help="admin console accounts")
    asub = admin.add_subparsers(dest="admin_command", required=True, metavar="COMMAND")
    p = asub.add_parser("create", parents=[common],
                        help="create a company admin (prints a one-time password)")
    p.add_argument("--company", required=True, metavar="SLUG")
    p.add_argument("--email", required=True)
    p.set_defaults(func=_create)
    p = asub.add_parser("reset-password", parents=[common],
                        help="give an admin a new one-time password (ends their sessions)")
    p.add_argument("--email", required=True)
    p.set_defaults(func=_reset)


if register not in COMMANDS:
    COMMANDS.append(register)
