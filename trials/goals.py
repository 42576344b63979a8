"""What a study optimises and what it refuses, in one place: its objectives (maximise proxy top-1, minimise
MACs, and on request minimise latency) and its constraints (the MACs budget, a lower MACs bound, a latency
limit), as the study records them (`record.STUDY_GOALS`).

Every constraint is one of Optuna's: a value per trial, <= 0 when met, set with `Trial.set_constraint` (Optuna
5's successor of the samplers' deprecated `constraints_func`, read by TPE, NSGA-II and GP alike). The searcher
(nas.searcher) computes a drawn point's measures before anything trains (MACs counted, latency from a device's
predictor file or measured), refuses a point that breaks a constraint and tells the sampler so; the study, the
scheduler, the front and the report read the objectives from here.

Imports the trial record only.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import record

# The objectives a study may have: (label, direction) by the key a trial and the trainable's results carry.
OBJECTIVES = {
    record.PROXY_TOP1: ("proxy top-1 (%)", "maximize"),
    record.MACS: ("MACs", "minimize"),
    record.LATENCY_MS: ("latency (ms)", "minimize"),
}
# What a point is constrained on, known before it trains: MACs (counted) and latency (predicted or measured).
MEASURES = (record.MACS, record.LATENCY_MS)


@dataclass(frozen=True)
class Constraint:
    """`measure` <= `bound` (`upper`) or >= `bound`, under Optuna's constraint `name`."""

    name: str
    measure: str
    bound: float
    upper: bool = True

    def value(self, x: float) -> float:
        """Optuna's constraint value, <= 0 when met: the violation relative to the bound, so that a constraint
        in MACs and one in milliseconds weigh alike where a sampler sums violations (NSGA-II, TPE)."""
        return (x - self.bound) / self.bound if self.upper else (self.bound - x) / self.bound

    def broken_by(self, x: float) -> bool:
        return self.value(x) > 0

    def text(self, x: float) -> str:
        """Why a point with this measure is refused, in words."""
        if self.measure == record.MACS:
            return f"{_macs(x)} MACs is {'over the budget' if self.upper else 'under the lower bound'} of {_macs(self.bound)}"
        return f"{x:.1f} ms is {'over the latency limit' if self.upper else 'under the latency floor'} of {self.bound:g} ms"

    def to_dict(self) -> dict:
        return {"name": self.name, "measure": self.measure, "bound": self.bound, "upper": self.upper}


def _macs(n: float) -> str:
    return f"{n / 1e9:.2f}G" if n >= 1e8 else f"{n / 1e6:.1f}M"


@dataclass(frozen=True)
class Goals:
    """A study's objectives (keys of OBJECTIVES, in order) and constraints."""

    objectives: tuple[str, ...] = (record.PROXY_TOP1, record.MACS)
    constraints: tuple[Constraint, ...] = ()

    @classmethod
    def of(cls, budget: int | None, min_macs: int | None = None, latency: bool = False, max_latency_ms: float | None = None) -> "Goals":
        """A search's goals from its options: --budget (and a band's lower end or --min-macs), --latency, --max-latency."""
        constraints = []
        if budget is not None:
            constraints.append(Constraint(record.BUDGET_CONSTRAINT, record.MACS, float(budget)))
        if min_macs is not None:
            constraints.append(Constraint(record.MIN_MACS_CONSTRAINT, record.MACS, float(min_macs), upper=False))
        if max_latency_ms is not None:
            constraints.append(Constraint(record.LATENCY_CONSTRAINT, record.LATENCY_MS, float(max_latency_ms)))
        objectives = (record.PROXY_TOP1, record.MACS) + ((record.LATENCY_MS,) if latency else ())
        return cls(objectives, tuple(constraints))

    # --- what the study and the samplers see -------------------------------------------------------------
    @property
    def directions(self) -> list[str]:
        return [OBJECTIVES[k][1] for k in self.objectives]

    @property
    def labels(self) -> list[str]:
        """The study's metric names."""
        return [OBJECTIVES[k][0] for k in self.objectives]

    @property
    def needs_latency(self) -> bool:
        """Whether a point's latency must be known before it trains (an objective or a constraint)."""
        return record.LATENCY_MS in self.objectives or any(c.measure == record.LATENCY_MS for c in self.constraints)

    def bound(self, name: str) -> float | None:
        """The bound of the constraint `name`, or None when the study has none."""
        return next((c.bound for c in self.constraints if c.name == name), None)

    @property
    def budget(self) -> int | None:
        bound = self.bound(record.BUDGET_CONSTRAINT)
        return None if bound is None else int(bound)

    @property
    def min_macs(self) -> int | None:
        bound = self.bound(record.MIN_MACS_CONSTRAINT)
        return None if bound is None else int(bound)

    @property
    def max_latency_ms(self) -> float | None:
        return self.bound(record.LATENCY_CONSTRAINT)

    def broken(self, measures: dict) -> Constraint | None:
        """The first constraint the measures break (a measure not known yet breaks none)."""
        for c in self.constraints:
            if measures.get(c.measure) is not None and c.broken_by(measures[c.measure]):
                return c
        return None

    def constraint_values(self, measures: dict) -> dict[str, float]:
        """Every constraint's value (GP needs each trial to carry all of them); one whose measure is not known
        (a latency left unmeasured because the MACs already refuse the point) is 0: neither met nor broken."""
        return {c.name: (c.value(measures[c.measure]) if measures.get(c.measure) is not None else 0.0) for c in self.constraints}

    def values(self, top1: float, measures: dict) -> list[float]:
        """The study's objective values of a trained point."""
        return [top1 if key == record.PROXY_TOP1 else measures[key] for key in self.objectives]

    def describe(self) -> str:
        """In words: 'maximise proxy top-1, minimise MACs and latency (ms); MACs 3.50G-4.50G, latency <= 40 ms'."""
        wanted = [f"{'maximise' if OBJECTIVES[k][1] == 'maximize' else 'minimise'} {OBJECTIVES[k][0]}" for k in self.objectives]
        limits = []
        low, high = self.min_macs, self.budget
        if low is not None and high is not None:
            limits.append(f"MACs {_macs(low)}-{_macs(high)}")
        elif high is not None:
            limits.append(f"MACs <= {_macs(high)}")
        elif low is not None:
            limits.append(f"MACs >= {_macs(low)}")
        if self.max_latency_ms is not None:
            limits.append(f"latency <= {self.max_latency_ms:g} ms")
        return ", ".join(wanted) + ("; " + ", ".join(limits) if limits else "")

    # --- as the study stores them ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"objectives": list(self.objectives), "constraints": [c.to_dict() for c in self.constraints]}

    @classmethod
    def from_dict(cls, data: dict) -> "Goals":
        return cls(tuple(data["objectives"]), tuple(Constraint(**c) for c in data.get("constraints", ())))

    @classmethod
    def of_study(cls, study) -> "Goals":
        """A study's goals; a study made before they were recorded maximised top-1 and minimised MACs within
        its budget."""
        stored = study.user_attrs.get(record.STUDY_GOALS)
        if stored:
            return cls.from_dict(stored)
        return cls.of(study.user_attrs.get(record.STUDY_BUDGET))
