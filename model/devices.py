"""Where the networks run: one rule for training and serving alike."""

from __future__ import annotations

import os
from pathlib import Path

import torch


def select_device(choice: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` fails loudly when there is none."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {choice!r} asked for, but CUDA is not available")
    return torch.device(choice)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes in bfloat16 natively. A CPU without AVX512-BF16 or AMX runs
    bfloat16 autocast through emulation, many times slower than fp32 (16x for the line reader's
    training step on a 2-core AVX2 machine)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def usable_cpus(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota (a
    container's ``--cpus``; ``cpu_max`` holds "<quota> <period>" or "max <period>"), at least 1.
    ``os.cpu_count()`` sees the host's and oversubscribes."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


CGROUP_MEMORY_MAX = Path("/sys/fs/cgroup/memory.max")
CGROUP_V1_MEMORY_LIMIT = Path("/sys/fs/cgroup/memory/memory.limit_in_bytes")
MEMINFO = Path("/proc/meminfo")


def memory_limit(memory_max: Path = CGROUP_MEMORY_MAX, v1_limit: Path = CGROUP_V1_MEMORY_LIMIT,
                 meminfo: Path = MEMINFO) -> int | None:
    """Bytes of memory this process may use: a container's limit (cgroup v2 ``memory.max``, or
    v1 ``memory.limit_in_bytes``), else the machine's total; None when none can be read. A v1
    "no limit" is a huge number, so the smaller of the limit and the machine's total is taken."""
    total = None
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                total = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    limits = [total] if total else []
    for path in (memory_max, v1_limit):
        try:
            value = path.read_text().strip()
        except OSError:
            continue
        if value.isdigit():
            limits.append(int(value))
    return min(limits) if limits else None
