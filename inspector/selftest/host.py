"""What decides how a model runs on this host: the CPU, its int8-relevant instruction sets, onnxruntime and the
execution providers. Recorded with a self-test record and named in every self-test failure."""

from __future__ import annotations

import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnxruntime as ort

__all__ = ["cpu_features", "host_line", "host_summary"]


def cpu_features() -> list[str]:
    """The CPU's instruction sets that decide which int8 kernels onnxruntime runs (x86: AVX2, AVX-512, VNNI;
    ARM: NEON dot product, i8mm), as named in /proc/cpuinfo; empty where that file is not readable."""
    wanted = {"avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8", "asimd", "asimddp", "i8mm"}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    found: set[str] = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            found |= wanted & set(line.split(":", 1)[-1].split())
    return sorted(found)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host_summary(providers: Sequence[str] = ()) -> dict[str, Any]:
    """What decides how a model runs here: CPU, its instruction sets, onnxruntime, execution providers."""
    return {
        "cpu": _cpu_model(),
        "machine": platform.machine(),
        "cpu_features": cpu_features(),
        "onnxruntime": ort.__version__,
        "providers": list(providers),
    }


def host_line(providers: Sequence[str]) -> str:
    h = host_summary(providers)
    return (
        f"CPU {h['cpu']} ({h['machine']}; {', '.join(h['cpu_features']) or 'no AVX2/AVX-512/VNNI/NEON dot'}), "
        f"onnxruntime {h['onnxruntime']}, provider {', '.join(h['providers']) or '?'}"
    )
