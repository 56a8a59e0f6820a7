"""A real `calbridge serve` in a subprocess, for tests that need the whole
server (several workers, restarts): started on a free port, stopped after."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECRET = "test-secret-" + "x" * 32


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def calbridge_env(db_url: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "CALBRIDGE_DATABASE_URL": db_url,
            "CALBRIDGE_SECURITY_SECRET_KEY": SECRET, **extra}


def run_cli(db_url: str, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "calbridge"
    return subprocess.run([str(exe), *args], cwd=ROOT, env=calbridge_env(db_url, **extra),
                          capture_output=True, text=True, timeout=120, check=True)


@contextlib.contextmanager
def running_server(db_url: str, *, workers: int = 1, **extra: str) -> Iterator[str]:
    """Yield the base URL of a server started with `calbridge serve`."""
    port = free_port()
    exe = Path(sys.executable).parent / "calbridge"
    proc = subprocess.Popen(
        [str(exe), "serve", "--port", str(port), "--workers", str(workers)],
        cwd=ROOT, env=calbridge_env(db_url, CALBRIDGE_SERVER_ACCESS_LOG="false", **extra),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read().decode() if proc.stdout else ""
                    raise RuntimeError(f"calbridge serve did not start:\n{out}") from None
                time.sleep(0.1)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
