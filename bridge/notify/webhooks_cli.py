"""`calbridge webhook …`: webhook endpoints from the command line.

Argument parsing and output only; each command runs the same unit of work
as the API (`bridge.notify.webhooks_service`), as the `admin` side.
"""

from __future__ import annotations

import argparse
from typing import Any

from bridge import cli
from bridge.config import Settings
from bridge.db import repo
from bridge.notify import webhooks_service as svc
from bridge.notify.webhooks import parse_networks

ADMIN = repo.Actor("admin", "cli")


def _ep_text(e: dict[str, Any]) -> str:
    state = "enabled" if e["enabled"] else f"DISABLED ({e['disabled_reason']})"
    return f"#{e['id']} {e['url']} [{', '.join(e['event_types'])}] {state}"


def _create(args: argparse.Namespace, settings: Settings) -> cli.Output:
    payload: dict[str, Any] = {"url": args.url, "description": args.description}
    if args.event:
        payload["event_types"] = args.event
    with cli.database(settings).sync_session(write=True) as s:
        company = repo.get_company(s, args.company)
        ep = svc.create_endpoint(s, company.id, payload, ADMIN,
                                 parse_networks(settings.webhooks.allow_networks))
        data = {**svc.endpoint_json(ep), "secret": svc.endpoint_secret(settings.secret(), ep)}
    return cli.Output(data, f"created webhook {_ep_text(data)}\nsigning secret: {data['secret']}")


def _list(args: argparse.Namespace, settings: Settings) -> cli.Output:
    with cli.database(settings).sync_session() as s:
        company = repo.get_company(s, args.company)
        items = [svc.endpoint_json(e) for e in svc.list_endpoints(s, company.id)]
    return cli.Output({"items": items},
                      "\n".join(_ep_text(e) for e in items) or "no webhook endpoints")


def _update(args: argparse.Namespace, settings: Settings, payload: dict[str, Any]) -> cli.Output:
    with cli.database(settings).sync_session(write=True) as s:
        company = repo.get_company(s, args.company)
        ep = svc.update_endpoint(s, company.id, args.id, payload, ADMIN,
                                 parse_networks(settings.webhooks.allow_networks))
        data = svc.endpoint_json(ep)
    return cli.Output(data, f"webhook {_ep_text(data)}")


def _change(args: argparse.Namespace, settings: Settings) -> cli.Output:
    payload: dict[str, Any] = {}
    if args.url is not None:
        payload["url"] = args.url
    if args.event:
        payload["event_types"] = args.event
    if args.description is not None:
        payload["description"] = args.description
    return _update(args, settings, payload)


def _disable(args: argparse.Namespace, settings: Settings) -> cli.Output:
    return _update(args, settings, {"enabled": False})


def _enable(args: argparse.Namespace, settings: Settings) -> cli.Output:
    return _update(args, settings, {"enabled": True})


def _delete(args: argparse.Namespace, settings: Settings) -> cli.Output:
    with cli.database(settings).sync_session(write=True) as s:
        company = repo.get_company(s, args.company)
        svc.delete_endpoint(s, company.id, args.id, ADMIN)
    return cli.Output({"deleted": args.id}, f"deleted webhook #{args.id}")


def _rotate(args: argparse.Namespace, settings: Settings) -> cli.Output:
    with cli.database(settings).sync_session(write=True) as s:
        company = repo.get_company(s, args.company)
        ep = svc.rotate_secret(s, company.id, args.id, ADMIN,
                               settings.webhooks.secret_grace_seconds)
        data = {**svc.endpoint_json(ep), "secret": svc.endpoint_secret(settings.secret(), ep)}
    return cli.Output(data, f"new signing secret for webhook #{args.id}: {data['secret']}\n"
                            f"(the old one also signs for {settings.webhooks.secret_grace_seconds} s)")


def _test(args: argparse.Namespace, settings: Settings) -> cli.Output:
    with cli.database(settings).sync_session(write=True) as s:
        company = repo.get_company(s, args.company)
        data = svc.delivery_json(svc.queue_test(s, company.id, args.id))
    return cli.Output(data, f"queued test message {data['message_id']} for webhook #{args.id} "
                            "(a running server sends it)")


def _deliveries(args: argparse.Namespace, settings: Settings) -> cli.Output:
    with cli.database(settings).sync_session() as s:
        company = repo.get_company(s, args.company)
        items = [svc.delivery_json(d) for d in svc.list_deliveries(
            s, company.id, args.id, status=args.status, after_id=args.after, limit=args.limit)]
    lines = [f"#{d['id']} {d['event_type']} seq={d['seq']} {d['status']} attempts={d['attempts']}"
             + (f" last={d['last_status_code'] or d['last_error']}" if d["attempts"] else "")
             for d in items]
    return cli.Output({"items": items}, "\n".join(lines) or "no deliveries")


def _replay(args: argparse.Namespace, settings: Settings) -> cli.Output:
    with cli.database(settings).sync_session(write=True) as s:
        company = repo.get_company(s, args.company)
        queued = svc.replay(s, company.id, args.id, args.from_seq, args.to_seq, settings.secret())
    return cli.Output({"queued": queued}, f"queued {queued} message(s) again for webhook #{args.id}")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    hook = sub.add_parser("webhook", parents=[common], help="webhook endpoints")
    hsub = hook.add_subparsers(dest="webhook_command", required=True, metavar="COMMAND")

    def command(name: str, help: str, func: cli.Handler, *, with_id: bool = True
                ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = hsub.add_parser(name, parents=[common], help=help)
        p.add_argument("--company", required=True, metavar="SLUG")
        if with_id:
            p.add_argument("id", type=int, help="the endpoint id")
        p.set_defaults(func=func)
        return p

    p = command("create", "add an endpoint (prints its signing secret)", _create, with_id=False)
    p.add_argument("--url", required=True)
    p.add_argument("--event", action="append", metavar="TYPE",
                   help="event type, entity.* or * (repeatable; default: all)")
    p.add_argument("--description", default="")
    command("list", "list endpoints", _list, with_id=False)
    p = command("update", "change URL, event types or description", _change)
    p.add_argument("--url")
    p.add_argument("--event", action="append", metavar="TYPE")
    p.add_argument("--description")
    command("disable", "stop deliveries (they queue up)", _disable)
    command("enable", "resume deliveries where they stopped", _enable)
    command("delete", "delete an endpoint and its delivery log", _delete)
    command("rotate-secret", "new signing secret", _rotate)
    command("test", "queue a webhook.test message", _test)
    p = command("deliveries", "the delivery log", _deliveries)
    p.add_argument("--status", choices=("pending", "succeeded"))
    p.add_argument("--after", type=int, default=0, metavar="DELIVERY_ID")
    p.add_argument("--limit", type=int, default=50)
    p = command("replay", "queue events again by change seq", _replay)
    p.add_argument("--from-seq", type=int, required=True)
    p.add_argument("--to-seq", type=int, required=True)


cli.COMMANDS.append(register)
