"""Measured latency: what running an architecture costs on this machine, beside the MACs it is counted in.

The timing protocol lives here, once, for every caller (`nas latency`, `nas arch`, the latency predictor, the
search): the full-size network (224 px, 1000 classes) in eval mode, run through a backend (`BACKENDS`: "torch"
runs it under `torch.inference_mode`; another backend, e.g. onnxruntime, is a function of the built model and
an example input returning the callable to time), timed by `torch.utils.benchmark` (warm-up, then blocks of
runs until there are at least `min_runs` of them and `min_seconds` timed; accelerators synchronised; the wall clock, or on a shared machine one thread's CPU
time), at
batch 1 (latency, ms) and at a throughput batch (img/s). Every figure carries its spread (interquartile
range) and the device it was measured on (`Device`: CPU, cores, threads, GPU, torch and CUDA versions,
backend, load average at the time).

Imports torch and searchspace's spec, cost and model only; never Ray, Optuna or the layers above.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

import torch

from .errors import NasError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# wall: elapsed time, what a user waits. cpu: this process's CPU time on one thread, which the other processes
# of a shared machine barely move (at load average 12 on 2 cores, two passes over two micro networks: CPU-time
# medians 0.5% and 6% apart, wall-clock medians 1.4x and 1.6x); it stands in for a quiet machine's wall time.
CLOCKS = {"wall": None, "cpu": time.process_time}
THROUGHPUT_BATCH = {"cpu": 8, "cuda": 64}  # the default throughput batch per device type (CPU: a few seconds a figure)


# --- backends: the built model and an example input -> the callable that is timed ---------------------------
def _torch_backend(model: torch.nn.Module, example: torch.Tensor, dtype: torch.dtype) -> Callable:
    if dtype == torch.float32:

        def run(x):
            with torch.inference_mode():
                return model(x)

        return run

    def run_autocast(x):  # as the trials train on CUDA: autocast, so every op runs in the dtype it supports
        with torch.inference_mode(), torch.autocast(example.device.type, dtype=dtype):
            return model(x)

    return run_autocast


def _onnxruntime_backend(model: torch.nn.Module, example: torch.Tensor, dtype: torch.dtype) -> Callable:
    """The network in onnxruntime on the CPU (deployment often runs there), exported and checked against PyTorch
    first (searchspace.onnx_export), with torch's thread count; it runs the input it was exported with."""
    if dtype != torch.float32 or example.device.type != "cpu":
        raise NasError("--backend onnxruntime measures fp32 on the CPU")
    from .onnx_export import onnxruntime_runner

    run = onnxruntime_runner(model, example, torch.get_num_threads())
    return lambda x: run()


BACKENDS: dict[str, Callable[[torch.nn.Module, torch.Tensor, torch.dtype], Callable]] = {
    "torch": _torch_backend, "onnxruntime": _onnxruntime_backend,
}


# --- the protocol --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Protocol:
    """How a network is timed. `throughput_batch` None: THROUGHPUT_BATCH for the device; 0: latency only.
    `threads` None: torch's default (torch.get_num_threads())."""

    img_size: int = 224
    num_classes: int = 1000
    throughput_batch: int | None = None
    dtype: str = "fp32"
    threads: int | None = None
    channels_last: bool = False
    device: str = "cpu"
    backend: str = "torch"
    min_runs: int = 15
    min_seconds: float = 0.5
    clock: str = "wall"

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise NasError(f"--dtype {self.dtype!r} is not allowed (allowed: {', '.join(DTYPES)})")
        try:
            kind = torch.device(self.device).type
        except RuntimeError:
            raise NasError(f"--device {self.device!r} is not a device (cpu, cuda or cuda:N)") from None
        if self.dtype != "fp32" and kind != "cuda":
            raise NasError(f"--dtype {self.dtype} is measured on CUDA only (device {self.device!r}): use fp32 on a CPU")
        if kind == "cuda" and not torch.cuda.is_available():
            raise NasError(f"device {self.device!r}: CUDA is not available on this machine")
        if self.backend not in BACKENDS:
            raise NasError(f"backend {self.backend!r} is not available (available: {', '.join(BACKENDS)})")
        if self.threads is not None and self.threads < 1:
            raise NasError(f"--threads {self.threads} must be at least 1")
        if self.clock not in CLOCKS:
            raise NasError(f"--clock {self.clock!r} is not allowed (allowed: {', '.join(CLOCKS)})")
        if self.clock == "cpu" and (kind != "cpu" or self.threads != 1):
            raise NasError("--clock cpu times one CPU thread: give --threads 1 (and no CUDA device)")

    @property
    def batch(self) -> int:
        """The throughput batch (0: none)."""
        if self.throughput_batch is not None:
            return self.throughput_batch
        return THROUGHPUT_BATCH.get(torch.device(self.device).type, THROUGHPUT_BATCH["cpu"])

    @property
    def num_threads(self) -> int:
        return self.threads or torch.get_num_threads()

    def to_dict(self) -> dict:
        return {**asdict(self), "throughput_batch": self.batch, "threads": self.num_threads}

    @classmethod
    def from_dict(cls, data: dict) -> "Protocol":
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


# --- the device ----------------------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


@dataclass(frozen=True)
class Device:
    """Where a figure was measured. `same_as` compares what decides the speed (not the load)."""

    cpu: str
    cores: int  # logical CPUs this process may run on
    threads: int  # torch threads the figure used
    gpu: str | None
    torch: str
    cuda: str | None
    backend: str
    dtype: str
    channels_last: bool
    platform: str
    load_average: tuple[float, float, float]  # 1, 5 and 15 minutes, when measured

    HARDWARE = ("cpu", "cores", "threads", "gpu", "torch", "cuda", "backend", "dtype", "channels_last")

    @classmethod
    def here(cls, protocol: Protocol) -> "Device":
        cuda = torch.device(protocol.device).type == "cuda"
        return cls(
            cpu=_cpu_model(),
            cores=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1,
            threads=protocol.num_threads,
            gpu=torch.cuda.get_device_name(torch.device(protocol.device)) if cuda else None,
            torch=torch.__version__,
            cuda=torch.version.cuda if cuda else None,
            backend=protocol.backend if protocol.backend == "torch" else f"{protocol.backend} {_version(protocol.backend)}",
            dtype=protocol.dtype,
            channels_last=protocol.channels_last,
            platform=f"{platform.system()}-{platform.machine()}",
            load_average=tuple(round(x, 2) for x in os.getloadavg()),
        )

    def same_as(self, other: "Device") -> bool:
        return all(getattr(self, k) == getattr(other, k) for k in self.HARDWARE)

    def describe(self) -> str:
        where = self.gpu or f"{self.cpu}, {self.threads} of {self.cores} cores"
        load = "/".join(f"{x:.1f}" for x in self.load_average)
        cuda = f", CUDA {self.cuda}" if self.cuda else ""
        backend = f"torch {self.torch}" if self.backend == "torch" else f"{self.backend} (torch {self.torch})"
        return f"{where}; {backend}{cuda}, {self.dtype}; load average {load}"

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in (f.name for f in fields(self))}

    @classmethod
    def from_dict(cls, data: dict) -> "Device":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["load_average"] = tuple(values.get("load_average", (0.0, 0.0, 0.0)))
        return cls(**values)


# --- one figure ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Timing:
    """The median time of one call at `batch` images, its interquartile range, and how many timed runs
    (each run the mean of a block of `per_run` calls) it rests on."""

    batch: int
    median_ms: float
    iqr_ms: float
    runs: int
    per_run: int = 1

    @property
    def ms_per_image(self) -> float:
        return self.median_ms / self.batch

    @property
    def images_per_second(self) -> float:
        return 1000.0 * self.batch / self.median_ms

    @property
    def relative_spread(self) -> float:
        """IQR / median: the figure's noise."""
        return self.iqr_ms / self.median_ms

    def to_dict(self) -> dict:
        return {**asdict(self), "images_per_second": round(self.images_per_second, 2),
                "relative_spread": round(self.relative_spread, 4)}

    @classmethod
    def from_dict(cls, data: dict) -> "Timing":
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


def measure(
    fn: Callable, example, *, threads: int | None = None, min_runs: int = 15, min_seconds: float = 0.5, clock: str = "wall"
) -> Timing:
    """Time `fn(example)`: the protocol every latency figure of the package follows.

    torch.utils.benchmark's blocked_autorange warms up, picks a block of calls long enough that the timer's
    overhead vanishes, and times blocks (synchronising CUDA) for at least `min_seconds`; when that leaves
    fewer than `min_runs` blocks it times again, long enough for them (the first pass was a warm-up too).
    `fn` is any callable (a model, or what a backend made of it); `example` its input, whose first dimension
    is the batch when it is a tensor.
    """
    from torch.utils.benchmark import Timer

    clocked = {"timer": CLOCKS[clock]} if CLOCKS[clock] else {}  # default: torch's, which synchronises accelerators
    timer = Timer(stmt="fn(x)", globals={"fn": fn, "x": example}, num_threads=threads or torch.get_num_threads(), **clocked)
    seconds = min_seconds
    for _ in range(3):
        m = timer.blocked_autorange(min_run_time=seconds)
        if len(m.times) >= min_runs:
            break
        seconds = max(seconds, sum(m.raw_times)) * min_runs / len(m.times) * 1.2
    batch = example.shape[0] if hasattr(example, "shape") else 1
    return Timing(batch=batch, median_ms=m.median * 1e3, iqr_ms=m.iqr * 1e3, runs=len(m.times), per_run=m.number_per_run)


# --- one architecture ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Latency:
    """What `measure_latency` returns: batch-1 latency and throughput with their spread, the protocol and the
    device; serialises to JSON (`to_dict`, `to_json`, `from_dict`)."""

    name: str | None
    id: str
    macs: int
    params: int
    latency: Timing
    throughput: Timing | None
    protocol: Protocol
    device: Device

    @property
    def ms(self) -> float:
        return self.latency.median_ms

    @property
    def images_per_second(self) -> float | None:
        return self.throughput.images_per_second if self.throughput else None

    def to_dict(self) -> dict:
        return {
            "name": self.name, "id": self.id, "macs": self.macs, "params": self.params,
            "latency_ms": round(self.latency.median_ms, 4), "latency_iqr_ms": round(self.latency.iqr_ms, 4),
            "images_per_second": round(self.images_per_second, 2) if self.throughput else None,
            "latency": self.latency.to_dict(),
            "throughput": self.throughput.to_dict() if self.throughput else None,
            "protocol": self.protocol.to_dict(), "device": self.device.to_dict(),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict) -> "Latency":
        return cls(
            name=data.get("name"), id=data["id"], macs=data["macs"], params=data["params"],
            latency=Timing.from_dict(data["latency"]),
            throughput=Timing.from_dict(data["throughput"]) if data.get("throughput") else None,
            protocol=Protocol.from_dict(data["protocol"]), device=Device.from_dict(data["device"]),
        )


def prepare(module: torch.nn.Module, example: torch.Tensor, protocol: Protocol) -> tuple[Callable, torch.Tensor]:
    """A module and its input on the protocol's device, in eval mode and memory format, as the backend's callable."""
    device = torch.device(protocol.device)
    module = module.to(device).eval()
    example = example.to(device)
    if protocol.channels_last and example.dim() == 4:
        module = module.to(memory_format=torch.channels_last)
        example = example.contiguous(memory_format=torch.channels_last)
    return BACKENDS[protocol.backend](module, example, DTYPES[protocol.dtype]), example


def time_module(module: torch.nn.Module, example: torch.Tensor, protocol: Protocol) -> Timing:
    """One module (a network, or one of its parts) on one input, by the protocol."""
    fn, example = prepare(module, example, protocol)
    return measure(
        fn, example, threads=protocol.num_threads, min_runs=protocol.min_runs, min_seconds=protocol.min_seconds,
        clock=protocol.clock,
    )


def measure_latency(spec, protocol: Protocol = Protocol(), in_chans: int = 3) -> Latency:
    """The latency (batch 1) and throughput (protocol.batch) of a spec's full-size network on this machine."""
    from .model import as_spec, build_model, count

    spec = as_spec(spec)
    params, macs = count(spec, img_size=protocol.img_size, num_classes=protocol.num_classes)
    torch.manual_seed(0)
    model = build_model(spec, num_classes=protocol.num_classes, img_size=protocol.img_size, in_chans=in_chans)
    shape = (in_chans, protocol.img_size, protocol.img_size)
    device = Device.here(protocol)  # the load average as the measurement starts
    latency = time_module(model, torch.randn(1, *shape), protocol)
    throughput = None
    if protocol.batch > 1:
        throughput = time_module(model, torch.randn(protocol.batch, *shape), protocol)
    elif protocol.batch == 1:
        throughput = latency
    return Latency(spec.name, spec.id, macs, params, latency, throughput, protocol, device)


__all__ = [
    "BACKENDS", "DTYPES", "THROUGHPUT_BATCH", "Device", "Latency", "Protocol", "Timing", "measure",
    "measure_latency", "prepare", "time_module",
]
