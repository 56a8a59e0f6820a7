"""Running the server: one process, or N worker processes on one port.

Workers share nothing but the database (DESIGN rule 7): each opens its own
listening socket with SO_REUSEPORT and the kernel spreads connections.
Migrations run once, in the parent, before any worker starts.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import signal
import sys
from types import FrameType

from aiohttp import web

from bridge.config import Settings

log = logging.getLogger("calbridge")


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        stream=sys.stderr)


def run_worker(settings: Settings, reuse_port: bool) -> None:
    from bridge.app import create_app

    setup_logging()
    web.run_app(create_app(settings), host=settings.server.host, port=settings.server.port,
                reuse_port=reuse_port, access_log=None, print=None, handle_signals=True)


def serve(settings: Settings, *, json_output: bool = False) -> None:
    from bridge.db.migrate import upgrade

    setup_logging()
    upgrade(settings.database.url)
    listening = {"url": settings.base_url, "workers": settings.server.workers,
                 "database": settings.database.url.split("@")[-1]}
    print(json.dumps(listening) if json_output else
          f"calbridge listening on http://{settings.server.host}:{settings.server.port} "
          f"({settings.server.workers} worker(s))", flush=True)
    if settings.server.workers == 1:
        run_worker(settings, reuse_port=False)
        return
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=run_worker, args=(settings, True), name=f"calbridge-worker-{i}")
             for i in range(settings.server.workers)]
    for p in procs:
        p.start()

    def stop(signum: int, frame: FrameType | None) -> None:
        for p in procs:
            if p.is_alive():
                p.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for p in procs:
        p.join()
