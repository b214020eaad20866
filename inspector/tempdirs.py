"""Temporary folders marked with the pid of the process that owns them, so that the folders of a process that was
killed (`kill -9`, a power cut: no `finally` ran) are removed by the next one.

A folder is `<tmp>/<prefix><pid>-<random>`. `remove_stale(prefix)` removes those of this user whose pid no longer
runs; a folder whose pid runs (its owner, or by chance another process that got the same pid) is left alone.

    with owned_tempdir("inspector-demo-") as workdir:   # /tmp/inspector-demo-4242-k3j2h1
        ...
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["make_owned_tempdir", "owned_tempdir", "pid_alive", "remove_stale"]

log = logging.getLogger(__name__)


def pid_alive(pid: int) -> bool:
    """True while a process with this pid exists (a zombie, already ended, counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (not Linux): the signal said it exists
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def make_owned_tempdir(prefix: str, root: Path | None = None) -> Path:
    """A new folder `<root or tmp>/<prefix><pid>-<random>` (the caller removes it)."""
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=root))


@contextlib.contextmanager
def owned_tempdir(prefix: str, root: Path | None = None) -> Iterator[Path]:
    """`make_owned_tempdir`, removed with everything in it at the end of the block."""
    path = make_owned_tempdir(prefix, root)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def remove_stale(prefix: str, root: Path | None = None) -> list[Path]:
    """Remove the folders `<prefix><pid>-*` of this user whose process is gone; returns those removed."""
    base = Path(root or tempfile.gettempdir())
    pattern = re.compile(re.escape(prefix) + r"(\d+)-")
    removed: list[Path] = []
    try:
        entries = list(base.iterdir())
    except OSError:
        return removed
    for path in entries:
        match = pattern.match(path.name)
        if match is None or pid_alive(int(match[1])):
            continue
        try:
            if not path.is_dir() or path.is_symlink() or path.stat().st_uid != os.getuid():
                continue
        except OSError:
            continue
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            removed.append(path)
    if removed:
        log.info("removed %d folder(s) left by ended runs: %s", len(removed), ", ".join(p.name for p in removed))
    return removed
