"""Timing, memory sampling and machine description shared by the benchmark sections."""
from __future__ import annotations

import copy
import ctypes
import os
import platform
import resource
import statistics
import threading
import time
from datetime import datetime, timezone
from typing import Callable

import psutil

GIB = 1024 ** 3
MIB = 1024 ** 2


def now_utc() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def timed(fn: Callable[[], object], reps: int = 1, warmup: int = 0) -> dict:
    """Run ``fn`` ``warmup`` + ``reps`` times; seconds of the timed runs, their best and median."""
    for _ in range(warmup):
        fn()
    runs = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return {"best_s": min(runs), "median_s": statistics.median(runs), "runs_s": runs}


class PeakRSS:
    """Peak resident set size of this process while the block runs, sampled every ``interval`` s."""

    def __init__(self, interval: float = 0.01):
        self.interval = interval
        self.process = psutil.Process()
        self.baseline = self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakRSS":
        self.baseline = self.peak = self.process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    def as_dict(self) -> dict:
        return {"peak_rss_gib": round(self.peak / GIB, 3), "rss_before_gib": round(self.baseline / GIB, 3)}


def process_peak_rss_gib() -> float:
    """Peak RSS of this process so far (getrusage; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB


def machine() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": cpu, "logical_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "memory_gib": round(psutil.virtual_memory().total / GIB, 1), "gpu": torch.cuda.is_available(),
            "python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform()}


class CpuShare:
    """Wall time, this process's CPU time (children included) and the CPU time that *other*
    processes used meanwhile, as a fraction of the machine: timings taken while other work ran on
    the same cores are slower, and this says by how much the machine was shared."""

    def __enter__(self) -> "CpuShare":
        self.process = psutil.Process()
        self._wall = time.perf_counter()
        self._own = self._own_cpu()
        self._system = self._system_busy()
        return self

    def _own_cpu(self) -> float:
        t = self.process.cpu_times()
        return t.user + t.system + t.children_user + t.children_system

    @staticmethod
    def _system_busy() -> float:
        t = psutil.cpu_times()
        return t.user + t.system + getattr(t, "nice", 0.0) + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)

    def __exit__(self, *exc) -> None:
        self.wall_s = time.perf_counter() - self._wall
        self.own_cpu_s = self._own_cpu() - self._own
        busy = self._system_busy() - self._system
        capacity = self.wall_s * (os.cpu_count() or 1)
        self.other_cpu_fraction = max(0.0, busy - self.own_cpu_s) / capacity if capacity else 0.0

    def so_far(self) -> "CpuShare":
        """The figures from entry until now, the measurement still running."""
        snapshot = copy.copy(self)
        snapshot.__exit__()
        return snapshot

    def as_dict(self) -> dict:
        return {"wall_s": round(self.wall_s, 2), "own_cpu_s": round(self.own_cpu_s, 2),
                "other_processes_cpu_fraction": round(self.other_cpu_fraction, 3)}


class CpuTally:
    """:class:`CpuShare` summed over several timed blocks (one figure's repetitions, which run
    interleaved with other figures): wall, own CPU and the other processes' share of the machine."""

    def __init__(self):
        self.wall_s = self.own_cpu_s = self.other_cpu_s = 0.0

    def __enter__(self) -> "CpuTally":
        self._share = CpuShare().__enter__()
        return self

    def __exit__(self, *exc) -> None:
        share = self._share
        share.__exit__(*exc)
        self.wall_s += share.wall_s
        self.own_cpu_s += share.own_cpu_s
        self.other_cpu_s += share.other_cpu_fraction * share.wall_s * (os.cpu_count() or 1)

    def as_dict(self) -> dict:
        capacity = self.wall_s * (os.cpu_count() or 1)
        return {"wall_s": round(self.wall_s, 2), "own_cpu_s": round(self.own_cpu_s, 2),
                "other_processes_cpu_fraction": round(self.other_cpu_s / capacity, 3) if capacity else 0.0}


_LIMITS = []


def pin_threads(threads: int) -> None:
    """Run torch (intra-op, MKL, OpenMP) and every BLAS pool threadpoolctl finds with ``threads`` threads."""
    import torch

    torch.set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    _LIMITS.append(threadpool_limits(limits=threads))       # kept alive for the whole run


MALLOC_MMAP_THRESHOLD = 32 * 2 ** 20
"""glibc's largest mmap threshold on 64-bit: every allocation below it comes from the heap."""
MALLOC_TRIM_THRESHOLD = 2 ** 30
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
"""glibc's ``mallopt`` parameter numbers (malloc.h)."""
_ALLOCATOR: dict = {"malloc": "adaptive"}


def pin_allocator(malloc: str) -> dict:
    """Fix glibc malloc's thresholds for the whole run (``malloc="fixed"``) or leave them adaptive.

    By default glibc raises its mmap and trim thresholds as large blocks are freed, so whether a
    22-MB temporary (one row of the reference's −L2 loop) is served from retained heap or mapped and
    zero-filled afresh (5,400 page faults) depends on the allocation history: the same loop took
    25–130 s between rounds. Fixed thresholds (mmap 32 MiB, trim 1 GiB, as ``mallopt`` sets them)
    make every round allocate alike; nothing computed changes. Returns the setting recorded.
    """
    _ALLOCATOR.clear()
    _ALLOCATOR["malloc"] = malloc
    if malloc == "fixed":
        try:
            libc = ctypes.CDLL("libc.so.6")
        except OSError:
            _ALLOCATOR["malloc"] = "adaptive (not glibc: thresholds left as they are)"
            return dict(_ALLOCATOR)
        ok = (libc.mallopt(M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD) == 1
              and libc.mallopt(M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD) == 1)
        _ALLOCATOR.update(mmap_threshold=MALLOC_MMAP_THRESHOLD, trim_threshold=MALLOC_TRIM_THRESHOLD, applied=ok)
    return dict(_ALLOCATOR)


def thread_settings() -> dict:
    """The thread counts the timings ran with: torch intra-/inter-op, and the BLAS/OpenMP pools."""
    import torch

    settings = {"torch_intra_op": torch.get_num_threads(), "torch_interop": torch.get_num_interop_threads(),
                "allocator": dict(_ALLOCATOR),
                "env": {name: os.environ.get(name) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                                 "OPENBLAS_NUM_THREADS")}}
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return settings
    settings["blas_pools"] = [{key: pool.get(key) for key in ("internal_api", "num_threads", "prefix")}
                              for pool in threadpool_info()]
    return settings
