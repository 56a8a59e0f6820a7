"""`calbridge changes …`: read the change feed and purge it past retention.

Argument parsing and output only; the reading and purging are
`bridge.changes.service`, as the API uses them.
"""

from __future__ import annotations

import argparse
from typing import Any

from bridge import cli
from bridge.changes import service
from bridge.config import Settings
from bridge.db import repo


def _list(args: argparse.Namespace, settings: Settings) -> cli.Output:
    secret = settings.secret()
    with cli.database(settings).sync_session() as s:
        company = repo.get_company(s, args.company)
        after = service.decode_cursor(secret, company.id, args.after) if args.after else None
        page = service.read_changes(s, company.id, after, args.limit, secret)
    cursor = service.encode_cursor(secret, company.id, page.last_seq)
    lines = [f"{e['seq']:>6} {e['occurred_at']} {e['type']:<28} {e['entity']} #{e['entity_id']} "
             f"by {e['source']}:{e['actor']}" for e in page.entries]
    lines.append(f"next cursor: {cursor}")
    return cli.Output({"items": page.entries, "next_cursor": cursor,
                       "has_more": page.last_seq < page.head}, "\n".join(lines))


def _purge(args: argparse.Namespace, settings: Settings) -> cli.Output:
    days = args.days or settings.changes.retention_days
    with cli.database(settings).sync_session(write=True) as s:
        counts = service.purge(s, days)
    return cli.Output(counts, f"purged {counts['changes']} change(s) and "
                              f"{counts['deliveries']} delivered webhook message(s) "
                              f"older than {days} days")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    changes = sub.add_parser("changes", parents=[common], help="the change feed")
    csub = changes.add_subparsers(dest="changes_command", required=True, metavar="COMMAND")
    p = csub.add_parser("list", parents=[common], help="entries after a cursor, oldest first")
    p.add_argument("--company", required=True, metavar="SLUG")
    p.add_argument("--after", metavar="CURSOR")
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(func=_list)
    p = csub.add_parser("purge", parents=[common], help="drop entries older than retention")
    p.add_argument("--days", type=int, help="default: [changes] retention_days")
    p.set_defaults(func=_purge)


cli.COMMANDS.append(register)
