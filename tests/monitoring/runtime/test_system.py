import sys
import types

from prometheus_client import CollectorRegistry

from monitoring.metrics import Metrics
from monitoring.runtime.system import Gpus, SystemSampler


def fake_nvml(count: int):
    """A stand-in for pynvml with ``count`` devices (no GPU on the CI machine)."""
    mod = types.ModuleType("pynvml")
    mod.nvmlInit = lambda: None
    mod.nvmlDeviceGetCount = lambda: count
    mod.nvmlDeviceGetHandleByIndex = lambda i: i
    mod.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=40 + h, memory=0)
    mod.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=(h + 1) * 2**30, total=80 * 2**30, free=0)
    return mod


def test_process_and_host_gauges_are_sampled():
    reg = CollectorRegistry()
    s = SystemSampler(Metrics(registry=reg), interval=60)
    s.sample()
    assert reg.get_sample_value("vigil_process_memory_rss") > 1e6
    assert reg.get_sample_value("vigil_process_threads") >= 1
    assert reg.get_sample_value("vigil_process_open_fds") >= 3
    assert 0 <= reg.get_sample_value("vigil_host_memory_utilization") <= 1


def test_gpu_gauges_absent_without_nvml(monkeypatch):
    broken = types.ModuleType("pynvml")

    def fail():
        raise OSError("NVML Shared Library Not Found")

    broken.nvmlInit = fail
    monkeypatch.setitem(sys.modules, "pynvml", broken)
    reg = CollectorRegistry()
    s = SystemSampler(Metrics(registry=reg), interval=60)
    s.sample()
    assert not s.gpus.available
    assert reg.get_sample_value("vigil_gpu_utilization", {"gpu": "0"}) is None


def test_gpu_gauges_per_device_with_nvml(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(2))
    reg = CollectorRegistry()
    s = SystemSampler(Metrics(registry=reg), interval=60)
    s.sample()
    assert s.gpus.available
    assert reg.get_sample_value("vigil_gpu_utilization", {"gpu": "1"}) == 0.41
    assert reg.get_sample_value("vigil_gpu_memory_used", {"gpu": "0"}) == 2**30
    assert reg.get_sample_value("vigil_gpu_memory_total", {"gpu": "1"}) == 80 * 2**30


def test_zero_devices_means_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(0))
    assert not Gpus().available


def test_sampler_thread_stops_quickly():
    s = SystemSampler(Metrics(registry=CollectorRegistry()), interval=30).start()
    import time

    t = time.perf_counter()
    s.stop(timeout=2)
    assert time.perf_counter() - t < 1
