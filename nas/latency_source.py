"""Where a search's latencies come from (`nas search --latency`, `--max-latency`): a device's predictor file
(`--latency-table`, written by `nas latency build`: a point the file measured is answered as measured, any other
predicted), or measurements on this machine by searchspace.latency's protocol, each point once (cached by its id).

A timing taken beside a proxy training on the same cores is wrong (benchmarks/latency_beside_training.py measures
by how much), so a measuring source never measures on its own: the searcher asks it only while none of its
trials is in training (nas.searcher: before the first trial, and between waves of trials).

Imports searchspace's latency protocol and predictor file; torch loads with the first measurement.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from searchspace import ArchSpec


@dataclass(frozen=True)
class Answer:
    """A point's latency (batch 1, ms), what gave it (measured, or the file's lut, lut+model, model) and, when
    measured, the interquartile range of its timed runs."""

    ms: float
    source: str
    iqr_ms: float | None = None


class TableLatency:
    """Latencies from a predictor file of `nas latency build`: every point answered at once (arithmetic on the file)."""

    measures_here = False

    def __init__(self, path: str):
        from searchspace.latency_table import LatencyTable

        self.path = str(path)
        self.table = LatencyTable.load(path)

    def known(self, spec: ArchSpec) -> Answer:
        point = self.table.points.get(spec.id)
        return Answer(self.table.predict(spec), self.table.source(spec), point.get("iqr_ms") if point else None)

    def record(self) -> dict:
        """What the study records of its latencies (record.STUDY_LATENCY)."""
        return {
            "source": "table", "table": Path(self.path).name, "predictor": self.table.predictor,
            "device": self.table.device, "protocol": self.table.protocol,
        }


class MeasuredLatency:
    """Latencies measured on this machine by searchspace.latency's protocol (batch 1 only), each point once."""

    measures_here = True

    def __init__(self, protocol=None):
        from searchspace.latency import Device, Protocol

        self.protocol = protocol or Protocol(throughput_batch=0)
        self.device = Device.here(self.protocol)
        self._cache: dict[str, Answer] = {}
        self.measured = 0  # measurements this process made
        self.seconds = 0.0  # and the seconds they took

    def known(self, spec: ArchSpec) -> Answer | None:
        return self._cache.get(spec.id)

    def remember(self, spec_id: str, answer: Answer) -> None:
        """A latency measured before (a stored trial of the study: same device, checked when it was opened)."""
        self._cache.setdefault(spec_id, answer)

    def measure(self, spec: ArchSpec) -> Answer:
        """Measure the point now: the caller makes sure no training runs beside it."""
        import time

        from searchspace.latency import measure_latency

        if spec.id not in self._cache:
            start = time.perf_counter()
            result = measure_latency(spec, self.protocol)
            self.seconds += time.perf_counter() - start
            self.measured += 1
            self._cache[spec.id] = Answer(round(result.ms, 4), "measured", round(result.latency.iqr_ms, 4))
        return self._cache[spec.id]

    def record(self) -> dict:
        return {"source": "measured", "device": self.device.to_dict(), "protocol": self.protocol.to_dict()}


def latency_source(table: str | None, threads: int | None = None, clock: str = "wall"):
    """The source a search takes its latencies from: the predictor file `table`, else measurements here with
    `threads` torch threads (default: torch's, one per core) on the `clock` (cpu: one thread's CPU time, which
    other processes of a shared machine barely move; it takes one thread)."""
    if table:
        return TableLatency(table)
    from searchspace.latency import Protocol

    threads = threads or (1 if clock == "cpu" else None)
    return MeasuredLatency(Protocol(throughput_batch=0, threads=threads, clock=clock))

