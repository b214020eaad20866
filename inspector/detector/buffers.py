"""Input buffers: a thread-safe pool of flat buffers, and `Prepared`, a letterboxed batch that owns one of them.

Each `Prepared` holds its buffer until it is released (`postprocess` does it), so the pipeline may preprocess
batch k+1 while batch k is still inferring: the two never share memory.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from inspector.detector.letterbox import LetterboxParams

__all__ = ["BufferPool", "Prepared"]


class BufferPool:
    """Free list of flat input buffers of one size and dtype; thread-safe.

    `acquire()` hands out a free buffer or allocates a new one (never blocks, never shares a buffer that is in
    use); `release()` takes it back, keeping at most `keep` spare buffers.
    """

    def __init__(self, size: int, dtype: np.dtype, keep: int = 4) -> None:
        self.size = size
        self.dtype = np.dtype(dtype)
        self.keep = keep
        self._free: list[np.ndarray] = []
        self._lock = threading.Lock()
        self.allocated = 0  # buffers created so far (a growing number means buffers are not being released)

    def acquire(self) -> np.ndarray:
        with self._lock:
            if self._free:
                return self._free.pop()
            self.allocated += 1
        return np.empty(self.size, self.dtype)

    def release(self, buf: np.ndarray) -> None:
        with self._lock:
            if len(self._free) < self.keep:
                self._free.append(buf)


@dataclass(eq=False)
class Prepared:
    """A preprocessed batch.

    tensor: (B, 3, H, W) float32 (float16 for a half model) network input, a view of a pooled buffer; B is the
        number of images, or the model's static batch size (extra rows unused).
    n: number of real images.
    params: per image `LetterboxParams`; orig_shapes: per image original (h, w).
    input_hw: (H, W) of `tensor`.
    """

    tensor: np.ndarray
    n: int
    params: list[LetterboxParams]
    orig_shapes: list[tuple[int, int]]
    input_hw: tuple[int, int]
    _buffer: np.ndarray | None = field(default=None, repr=False)
    _pool: BufferPool | None = field(default=None, repr=False)

    def release(self) -> None:
        """Give the buffer back to the pool (idempotent). `tensor` must not be used afterwards."""
        buf, self._buffer = self._buffer, None
        if buf is not None and self._pool is not None:
            self._pool.release(buf)

    @property
    def released(self) -> bool:
        return self._buffer is None
