"""The store's counters (rows and images written, dropped, failed, pruned; bytes in the archive) and the one lock
that guards them, shared by the writer and the image archive so that `stats()` reads one consistent snapshot.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

__all__ = ["Counters"]


@dataclass
class Counters:
    """Read and change the numbers only while holding `lock`."""

    rows_written: int = 0
    rows_dropped: int = 0
    write_errors: int = 0
    images_written: int = 0
    images_skipped: int = 0
    images_failed: int = 0
    images_pruned: int = 0
    rows_pruned: int = 0
    image_bytes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def snapshot(self) -> dict[str, int]:
        """The counters as `stats()` names them (the caller holds `lock`)."""
        return {
            "rows_written": self.rows_written,
            "rows_dropped": self.rows_dropped,
            "write_errors": self.write_errors,
            "images_written": self.images_written,
            "images_skipped": self.images_skipped,
            "images_failed": self.images_failed,
            "images_pruned": self.images_pruned,
            "rows_pruned": self.rows_pruned,
            "image_bytes": self.image_bytes,
        }
