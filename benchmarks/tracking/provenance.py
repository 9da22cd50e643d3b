"""Provenance of a run: code version, package versions, hardware and resource use."""

from __future__ import annotations

import os
import platform
import subprocess
import threading
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import psutil

TRACKED_PACKAGES = (
    "cgcbench",
    "torch",
    "torch-geometric",
    "numpy",
    "scipy",
    "pandas",
    "anndata",
    "scanpy",
    "scikit-learn",
    "mlflow",
    "scvi-tools",
    "cell-gears",
    "scgpt",
    "transformers",
    "gensim",
    "scib",
    "sergio-scsim",
)


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that can change a result."""
    out = {}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def git_commit(repo: Path | None = None) -> dict[str, Any]:
    """The git commit of the code (``unknown`` outside a checkout) and whether it is dirty."""
    repo = repo or Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
        )
        return {"commit": sha, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": os.environ.get("CGCBENCH_GIT_COMMIT", "unknown"), "dirty": None}


def hardware() -> dict[str, Any]:
    """CPU, memory and accelerator of this machine."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "device": "cpu",
    }
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["device"] = "cuda"
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


@dataclass
class ResourceMeter:
    """Measures wall time, CPU time and peak RSS of a process (this one by default) over a block.

    Peak RSS and CPU time are sampled every ``interval`` seconds by a background thread (the
    process-lifetime ``ru_maxrss`` cannot tell one matrix cell from the next); with ``pid`` the
    meter watches another process, e.g. an isolated cell's child. GPU peak memory comes from
    ``torch.cuda.max_memory_allocated`` when CUDA is in use in this process.
    """

    interval: float = 0.05
    pid: int | None = None
    wall_time_s: float = 0.0
    cpu_time_s: float = 0.0
    peak_rss_mb: float = 0.0
    gpu_peak_mb: float | None = None
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    def _cpu(self) -> float:
        cpu = self._proc.cpu_times()
        return cpu.user + cpu.system

    def _read(self) -> None:
        try:
            self.peak_rss_mb = max(self.peak_rss_mb, self._proc.memory_info().rss / 2**20)
            self._cpu_last = self._cpu()
        except psutil.Error:  # the watched process has exited
            pass

    def __enter__(self) -> ResourceMeter:
        self._proc = psutil.Process(self.pid)
        self._t0 = time.perf_counter()
        self._cpu0 = 0.0 if self.pid is not None else self._cpu()
        self._cpu_last = self._cpu0
        self._read()
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        if self.pid is None:
            try:
                import torch

                if torch.cuda.is_available():
                    torch.cuda.reset_peak_memory_stats()
            except ImportError:
                pass
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._read()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._read()
        self.wall_time_s = time.perf_counter() - self._t0
        self.cpu_time_s = self._cpu_last - self._cpu0
        if self.pid is None:
            try:
                import torch

                if torch.cuda.is_available():
                    self.gpu_peak_mb = torch.cuda.max_memory_allocated() / 2**20
            except ImportError:
                pass

    def as_dict(self) -> dict[str, float | None]:
        """The measurements, rounded for records."""
        return {
            "wall_time_s": round(self.wall_time_s, 3),
            "cpu_time_s": round(self.cpu_time_s, 3),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "gpu_peak_mb": None if self.gpu_peak_mb is None else round(self.gpu_peak_mb, 1),
        }
