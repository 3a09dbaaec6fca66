"""System metrics: process and host CPU, memory, open fds, threads; NVIDIA GPUs via NVML.

A daemon thread samples every ``interval`` seconds into gauges. GPU gauges exist only
when NVML initialises and reports at least one device.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import psutil

from monitoring import names as N

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GpuReading:
    index: int
    utilization: float
    memory_used: int
    memory_total: int


class Gpus:
    """NVML access; ``available`` is False (and readings empty) without an NVIDIA GPU."""

    def __init__(self) -> None:
        self._nvml = None
        self._handles: list = []
        try:
            import pynvml  # optional (GPU hosts only): a missing or broken NVML means no GPU figures

            pynvml.nvmlInit()
            n = pynvml.nvmlDeviceGetCount()
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(n)]
            self._nvml = pynvml if n else None
        except Exception as exc:  # no driver, no library, no device: GPU metrics are absent
            log.debug("NVML unavailable: %s", exc)
            self._nvml = None

    @property
    def available(self) -> bool:
        return self._nvml is not None

    def read(self) -> list[GpuReading]:
        if self._nvml is None:
            return []
        out = []
        for i, h in enumerate(self._handles):
            util = self._nvml.nvmlDeviceGetUtilizationRates(h)
            mem = self._nvml.nvmlDeviceGetMemoryInfo(h)
            out.append(GpuReading(i, util.gpu / 100.0, int(mem.used), int(mem.total)))
        return out


class SystemSampler:
    """Samples process/host/GPU figures into :class:`~monitoring.metrics.Metrics` gauges."""

    def __init__(self, metrics, interval: float = 5.0, on_sample=None):
        if interval <= 0:
            raise ValueError(f"interval must be > 0; got {interval}")
        self._metrics = metrics
        self._interval = interval
        #: called with (CPU cores, RSS bytes) of this process at every sample
        self._on_sample = on_sample
        self._proc = psutil.Process()
        self._psutil = psutil
        self._gpus = Gpus()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._proc.cpu_percent(None)
        psutil.cpu_percent(None)

    @property
    def gpus(self) -> Gpus:
        return self._gpus

    def sample(self) -> None:
        m, p = self._metrics, self._proc
        with p.oneshot():
            cpu, rss = p.cpu_percent(None) / 100.0, p.memory_info().rss
            m[N.M_PROCESS_CPU].set(cpu)
            m[N.M_PROCESS_RSS].set(rss)
            if self._on_sample is not None:
                self._on_sample(cpu, float(rss))
            m[N.M_PROCESS_THREADS].set(p.num_threads())
            try:
                m[N.M_PROCESS_FDS].set(p.num_fds())
            except AttributeError:  # not on Windows
                pass
        m[N.M_HOST_CPU].set(self._psutil.cpu_percent(None) / 100.0)
        m[N.M_HOST_MEMORY].set(self._psutil.virtual_memory().percent / 100.0)
        for g in self._gpus.read():
            m[N.M_GPU_UTIL].set(g.utilization, gpu=str(g.index))
            m[N.M_GPU_MEMORY_USED].set(g.memory_used, gpu=str(g.index))
            m[N.M_GPU_MEMORY_TOTAL].set(g.memory_total, gpu=str(g.index))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample()
            except Exception:  # sampling must never take the process down
                log.exception("system metrics sample failed")
            self._stop.wait(self._interval)

    def start(self) -> "SystemSampler":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="vigil-system-metrics", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
