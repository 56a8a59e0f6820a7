"""`calbridge feed create|list|rotate|revoke`: argument parsing and output only.

The units of work are the ones the API uses (`bridge.feeds.service`);
`--json` prints the same link documents as `/api/v1/feeds`.
"""

from __future__ import annotations

import argparse
from typing import Any

from bridge.cli import ADMIN, COMMANDS, Output, database
from bridge.config import Settings
from bridge.db import repo
from bridge.feeds import service


def _text(link: dict[str, Any]) -> str:
    head = (f"feed {link['id']}: {link['scope']} '{link['name']}', {link['privacy']}"
            + (f" [{link['label']}]" if link["label"] else "") + f" ({link['status']})")
    if "urls" not in link:
        return head
    urls = link["urls"]
    return "\n".join([head, f"  https:  {urls['https']}", f"  webcal: {urls['webcal']}",
                      f"  Google: {urls['google']}", f"  Outlook: {urls['outlook']}"])


def _create(args: argparse.Namespace, settings: Settings) -> Output:
    db = database(settings)
    with db.sync_session(write=True) as s:
        company = repo.get_company(s, args.company)
        payload: dict[str, Any] = {"privacy": args.privacy, "label": args.label}
        if args.staff:
            payload["staff_id"] = repo.get_staff_by_email(s, company.id, args.staff).id
        elif args.group:
            payload["group_id"] = repo.get_group_by_slug(s, company.id, args.group).id
        else:
            payload["scope"] = "company"
        link = service.create_feed(s, company.id, payload, settings.secret(), ADMIN)
        data = service.link_json(s, link, settings.secret(), settings.base_url)
    return Output(data, _text(data))


def _list(args: argparse.Namespace, settings: Settings) -> Output:
    db = database(settings)
    with db.sync_session() as s:
        company = repo.get_company(s, args.company)
        links = service.list_feeds(s, company.id, include_revoked=args.include_revoked)
        data = [service.link_json(s, link, settings.secret(), settings.base_url)
                for link in links]
    text = "\n".join(_text(d) for d in data) if data else f"no feed links in {args.company}"
    return Output(data, text)


def _rotate(args: argparse.Namespace, settings: Settings) -> Output:
    db = database(settings)
    with db.sync_session(write=True) as s:
        company = repo.get_company(s, args.company)
        link = service.rotate_feed(s, company.id, args.id, settings.secret(), ADMIN)
        data = service.link_json(s, link, settings.secret(), settings.base_url)
    return Output(data, "rotated: the old URL no longer works\n" + _text(data))


def _revoke(args: argparse.Namespace, settings: Settings) -> Output:
    db = database(settings)
    with db.sync_session(write=True) as s:
        company = repo.get_company(s, args.company)
        link = service.revoke_feed(s, company.id, args.id, ADMIN)
        data = service.link_json(s, link, settings.secret(), settings.base_url)
    return Output(data, f"revoked feed {data['id']} ('{data['name']}')")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    feed = sub.add_parser("feed", parents=[common], help="ICS subscription feed links")
    fsub = feed.add_subparsers(dest="feed_command", required=True, metavar="COMMAND")

    p = fsub.add_parser("create", parents=[common],
                        help="create a feed link for a staff member, a group or the company")
    p.add_argument("--company", required=True, metavar="SLUG")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--staff", metavar="EMAIL", help="one staff member's appointments")
    target.add_argument("--group", metavar="SLUG", help="everyone in a group")
    target.add_argument("--all", action="store_true", help="the whole company")
    p.add_argument("--privacy", choices=("full", "limited", "busy"), default="full")
    p.add_argument("--label", default="")
    p.set_defaults(func=_create)

    p = fsub.add_parser("list", parents=[common], help="list feed links with their URLs")
    p.add_argument("--company", required=True, metavar="SLUG")
    p.add_argument("--include-revoked", action="store_true")
    p.set_defaults(func=_list)

    p = fsub.add_parser("rotate", parents=[common], help="new URL; the old one stops at once")
    p.add_argument("--company", required=True, metavar="SLUG")
    p.add_argument("id", type=int)
    p.set_defaults(func=_rotate)

    p = fsub.add_parser("revoke", parents=[common], help="revoke a feed link for good")
    p.add_argument("--company", required=True, metavar="SLUG")
    p.add_argument("id", type=int)
    p.set_defaults(func=_revoke)


if register not in COMMANDS:
    COMMANDS.append(register)
