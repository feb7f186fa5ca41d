"""One process per run directory.

Two commands started into one `--out` would both search the same cache chunks and race on the same
checkpoints. The first takes an OS-level lock on RUN/.lock (`filelock`: flock on Unix), held until
the process ends; a second gets one line naming the holder. The OS drops the lock when its holder
dies however it dies, so a killed run never blocks its own resume.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

from repsearch.errors import UserError

_HELD: dict[str, object] = {}  # path -> lock, held for the life of the process


def lock_run_dir(path: Path) -> None:
    """Take RUN/.lock (creating RUN), or refuse in one line when another process holds it."""
    from filelock import FileLock, Timeout
    path = Path(path).resolve()
    if str(path) in _HELD:
        return
    path.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path / ".lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise UserError(f"--out {path} is in use by another repsearch process ({holder(path)}); wait for it to "
                        "finish or choose another --out") from None
    _HELD[str(path)] = lock
    (path / ".lock.holder").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                                   "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                                   "command": " ".join(sys.argv)}))


def holder(path: Path) -> str:
    """Who holds the lock, as the holder wrote it."""
    try:
        h = json.loads((Path(path) / ".lock.holder").read_text())
        return f"pid {h['pid']} on {h['host']}, started {h['started']}: {h['command']}"
    except (OSError, ValueError, KeyError):
        return "holder unknown"


def release_all() -> None:
    """Let go of every run directory this process locked (a command's end, in-process tests)."""
    while _HELD:
        _, lock = _HELD.popitem()
        lock.release()
