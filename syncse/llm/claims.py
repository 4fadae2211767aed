"""Request claims: lock files by content hash, so that workers sharing a cache folder (processes, or
machines on a shared file system) never send one request twice.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    return True


class RequestClaims:
    """Lock files by content hash, so that workers sharing a cache folder never send one request twice.

    A worker claims a request by creating `<dir>/<key[:2]>/<key>.lock` with O_CREAT | O_EXCL (atomic,
    also on NFS v3+), holding its host, pid and a per-process token; it refreshes the file's mtime on
    every attempt and removes it once the response is cached (or given up). A claim is stale, and
    taken over, when its owner ran on this host and is gone (kill -9), or when it was not refreshed
    for `stale_s` seconds (a dead machine).
    """

    def __init__(self, directory: str | Path, stale_s: float = 600.0) -> None:
        self.directory = Path(directory)
        self.stale_s = stale_s
        self.host = socket.gethostname()
        self.owner = f"{self.host}:{os.getpid()}:{uuid.uuid4().hex[:12]}"

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.lock"

    def acquire(self, key: str) -> bool:
        """Claim `key`; False while another live worker (or another thread here) holds it."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # a stale claim broken, or released under us, is worth another try
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                if not self._break_if_stale(path):
                    return False
                continue
            with os.fdopen(fd, "w") as out:
                json.dump({"owner": self.owner, "host": self.host, "pid": os.getpid(), "time": time.time()}, out)
            return True
        return False

    def held(self, key: str) -> bool:
        """Whether a live claim on `key` exists (by anyone)."""
        path = self._path(key)
        return path.exists() and not self._stale(path, _read_claim(path))

    def touch(self, key: str) -> None:
        """Refresh our claim's mtime (a heartbeat: long retries do not look dead)."""
        with contextlib.suppress(OSError):
            os.utime(self._path(key))

    def release(self, key: str) -> None:
        """Remove our claim on `key` (never one a worker took over from us)."""
        path = self._path(key)
        if _read_claim(path).get("owner") == self.owner:
            path.unlink(missing_ok=True)

    def _stale(self, path: Path, claim: dict[str, Any]) -> bool:
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return True
        if claim.get("host") == self.host and isinstance(claim.get("pid"), int) and claim.get("owner") != self.owner:
            if not pid_alive(claim["pid"]):
                return True
        return age > self.stale_s

    def _break_if_stale(self, path: Path) -> bool:
        """Remove a stale claim; True if the path is free now. Renaming first makes the removal
        atomic, and a claim renamed by mistake (re-taken since we looked) is linked back."""
        claim = _read_claim(path)
        if not self._stale(path, claim):
            return False
        tomb = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.stale")
        try:
            os.rename(path, tomb)
        except FileNotFoundError:
            return True
        if _read_claim(tomb) != claim:  # a fresh claim: put it back unless yet another exists
            with contextlib.suppress(FileExistsError):
                os.link(tomb, path)
        tomb.unlink(missing_ok=True)
        logger.info("took over a stale claim on %s (owner %s)", path.stem[:12], claim.get("owner", "?"))
        return True


def _read_claim(path: Path) -> dict[str, Any]:
    """A claim file's content; {} when absent, empty (being written) or unreadable."""
    try:
        claim = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return claim if isinstance(claim, dict) else {}
