"""`nas search`: an Optuna multi-objective study whose proxy-training trials Ray Tune schedules.

Order matters: everything a user can get wrong (space, budget, storage, data, study options) is
checked before Ray starts; then Ray runs the trials, the searcher reports each outcome to the study,
and the study is the only record.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import optuna

from dashboards.calibration import find_calibration, summary_line
from searchspace import NasError, SearchSpace, count, format_budget, format_macs, load_space, preset, preset_names
from searchspace.collapse import collapsed_axes
from trials import ProxyRecipe, data_name, load_proxy_data
from trials import record
from trials.goals import Goals

from .study import (
    DEFAULT_STORAGE,
    HEARTBEAT_SECONDS,
    fail_stale_trials,
    make_sampler,
    masked,
    open_search_study,
    open_storage,
    storage_errors,
)


@dataclass(frozen=True)
class RayOptions:
    """Where and how the trials run, the same for every command that trains (search, calibrate, confirm,
    bench build): the options of `nas.cli.ray_options`."""

    address: str | None = None  # a Ray cluster to join; None: a local Ray
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None  # None: one GPU per trial where the cluster has GPUs
    max_concurrent: int | None = None
    max_memory_per_trial: int | None = None  # bytes a trial may allocate beyond what its process holds


@dataclass
class SearchOptions:
    budget: int
    min_macs: int | None = None  # the lower end of a MACs band (--budget 3.5G-4.5G, --min-macs)
    latency: bool = False  # latency (ms) as a third objective (--latency)
    max_latency_ms: float | None = None  # a latency limit (--max-latency)
    latency_table: str | None = None  # a predictor file of `nas latency build`; None: measured here
    latency_threads: int | None = None  # measured here: torch threads (None: torch's), and the clock
    latency_clock: str = "wall"
    space: str | None = None
    data: str | None = None
    storage: str = DEFAULT_STORAGE
    study_name: str | None = None
    trials: int = 24
    time_limit: float | None = None
    seed: int = 0
    sampler: str = "tpe"
    scheduler: str = "pareto"
    ray: RayOptions = field(default_factory=RayOptions)
    recipe: ProxyRecipe = field(default_factory=ProxyRecipe)
    baselines: bool = False
    queue: list = field(default_factory=list)  # specs to train first (a calibration's panel ...)
    draws: bool = True  # False: train the queue only, never a point the sampler draws
    role: str = "search"  # what the study is for (trials.record.STUDY_ROLE)
    evaluate_at: tuple[float, ...] | None = None  # epochs to evaluate at before the end; None: the scheduler's rungs
    artifact_dir: str = "nas-artifacts"

    @property
    def goals(self) -> Goals:
        """The study's objectives and constraints (trials.goals)."""
        return Goals.of(self.budget, self.min_macs, self.latency, self.max_latency_ms)

    def default_study_name(self, space: SearchSpace) -> str:
        """The default study: SPACE-BUDGET-DATA, the budget a band where it has a lower end, and what latency
        adds (-latency: an objective; -max40ms: a limit)."""
        band = f"{format_budget(self.min_macs)}-" if self.min_macs else ""
        name = f"{space.name}-{band}{format_budget(self.budget)}-{data_name(self.data)}"
        if self.latency:
            name += "-latency"
        if self.max_latency_ms is not None:
            name += f"-max{self.max_latency_ms:g}ms"
        return name


@dataclass
class Prepared:
    space: SearchSpace
    study: optuna.Study
    sampler: optuna.samplers.BaseSampler
    resumed: bool
    stale: list[int]
    queue: list
    data: object
    latency: object = None  # where the latencies come from (nas.latency_source), when the goals need them


def prepare(opts: SearchOptions, say=print) -> Prepared:
    """Every check before training: space vs budget, the Ray address, storage, study, data, the latency source."""
    space = load_space(opts.space)
    goals = opts.goals
    cheapest, cost = space.cheapest()
    if cost.macs > opts.budget:
        raise NasError(
            f"no point of {space.source} fits the budget of {format_macs(opts.budget)} MACs: its cheapest point "
            f"({cheapest.id}) needs {format_macs(cost.macs)}"
        )
    if opts.min_macs is not None and opts.min_macs >= opts.budget:
        raise NasError(f"the MACs band {format_macs(opts.min_macs)}-{format_macs(opts.budget)} is empty: its lower end must be below the budget")
    if opts.latency_table and not goals.needs_latency:
        raise NasError("--latency-table gives the latency --latency or --max-latency use: add one of them")
    if opts.latency_table and (opts.latency_threads or opts.latency_clock != "wall"):
        raise NasError("--latency-threads and --latency-clock say how latency is measured here, not in a --latency-table: give one or the other")
    if opts.latency_clock == "cpu" and (opts.latency_threads or 1) != 1:
        raise NasError("--latency-clock cpu times one CPU thread: give --latency-threads 1, or leave it out")
    if opts.ray.address:
        _probe(opts.ray.address)
    try:
        Path(opts.artifact_dir).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NasError(f"--artifact-dir {opts.artifact_dir}: cannot create it ({exc.strerror or exc})") from None
    storage = open_storage(opts.storage)
    name = opts.study_name or opts.default_study_name(space)
    sampler = make_sampler(opts.sampler, opts.seed, opts.trials)
    latency = None
    if goals.needs_latency:
        from .latency_source import latency_source

        latency = latency_source(opts.latency_table, opts.latency_threads, opts.latency_clock)
    with storage_errors(opts.storage):
        study, resumed = open_search_study(
            storage, name, space, opts.budget, data_name(opts.data), opts.recipe, opts.role, goals,
            latency.record() if latency else None,
        )
        stale = fail_stale_trials(study)
    r = opts.recipe
    data = load_proxy_data(opts.data, r.resolution, r.subset, r.val_size, r.seed, r.held_out_from)
    baselines = list(opts.queue)
    if opts.baselines:  # their latencies are judged when queued (StudySearcher._enqueue), before anything trains
        baselines += [preset(n) for n in preset_names() if goals.broken({record.MACS: count(preset(n)).macs}) is None]
    say(f"study {study.study_name!r} in {masked(opts.storage)} ({'resumed, ' + str(len(study.get_trials(deepcopy=False))) + ' trials' if resumed else 'new'})")
    if stale:
        say(f"failed {len(stale)} trials left running by a stopped search (re-queued): {stale}")
    say(f"space {space.name}: {space.cardinality():.2e} points, cheapest {format_macs(cost.macs)}; budget {format_macs(opts.budget)} MACs")
    say(f"objectives: {goals.describe()}")
    if latency is not None:
        from dashboards.front import latency_device

        say(f"latency: {latency_device(latency.record())}")
    say(f"data {data.describe()}")
    say(f"{'proxy' if opts.role == 'search' else opts.role} recipe: {r.describe()}")
    if opts.role == "search":
        blind = [c for c in collapsed_axes(space, r.resolution, r.stem_stride, r.windows) if not c["also_at_full_size"]]
        if blind:
            say(f"at these stage maps {len(blind)} choices of the space change nothing the proxy can see (nas calibrate lists them)")
        say(summary_line(*find_calibration(study)))
    if opts.baselines:
        say(f"baselines first: {', '.join(s.label for s in baselines[len(opts.queue):])}")
    return Prepared(space, study, sampler, resumed, stale, baselines, data, latency)


def start_ray(address: str | None, say=print):
    """Join the cluster at `address`, or start a local Ray on this machine's CPUs (and GPUs)."""
    configure_ray_environment(address)
    import ray

    if ray.is_initialized():  # several runs in one process (nas calibrate) share one Ray
        return ray.cluster_resources()
    start = time.perf_counter()
    try:
        if address:
            ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
        else:
            ray.init(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise NasError(f"cannot reach the Ray cluster at {address}: {first}" if address else f"cannot start Ray: {first}") from None
    resources = ray.cluster_resources()
    say(
        f"Ray {'cluster ' + address if address else 'local'}: {int(resources.get('CPU', 0))} CPUs, "
        f"{resources.get('GPU', 0):g} GPUs (started in {time.perf_counter() - start:.1f}s)"
    )
    return resources


def _probe(address: str) -> None:
    """Fail in seconds on an address nothing listens at (Ray itself retries for minutes)."""
    hostport = address.split("://", 1)[-1]
    if hostport == "auto" or ":" not in hostport:
        return
    host, _, port = hostport.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except (OSError, ValueError) as exc:
        raise NasError(f"cannot reach the Ray cluster at {address}: {exc.__class__.__name__}: {exc}") from None


def configure_ray_environment(address: str | None) -> None:
    """Environment Ray reads when it is imported: quiet Tune output, and token auth towards clusters."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    if address and "RAY_AUTH_MODE" not in os.environ and _ray_token_available():
        # `ray start` clusters use token authentication by default (Ray >= 2.59), but a driver given an
        # address sends its token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token) only in
        # token mode; a cluster without authentication accepts such a driver too.
        os.environ["RAY_AUTH_MODE"] = "token"


def _ray_token_available() -> bool:
    return bool(os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")) or (
        Path.home() / ".ray" / "auth_token"
    ).is_file()


def run_search(opts: SearchOptions, console=None) -> dict:
    """Run the search; returns a summary. Raises NasError for anything the user can fix."""
    configure_ray_environment(opts.ray.address)
    from ray import tune

    from .progress import SearchProgress
    from .scheduler import evaluation_points, make_scheduler
    from .searcher import StudySearcher
    from .trainable import proxy_trial

    say = (lambda text: console.print(text, markup=False)) if console else print
    started = time.perf_counter()
    prep = prepare(opts, say)
    goals = opts.goals
    scheduler = make_scheduler(opts.scheduler, opts.recipe.epochs, objectives=goals.objectives)
    resources = start_ray(opts.ray.address, say)
    gpus = opts.ray.gpus_per_trial if opts.ray.gpus_per_trial is not None else (1.0 if resources.get("GPU", 0) else 0.0)
    from .export import attach_config

    searcher = StudySearcher(
        prep.study, prep.space, opts.budget, opts.recipe, opts.trials, prep.queue, prep.sampler,
        before_complete=lambda trial: attach_config(prep.study, trial, opts.storage, Path(opts.artifact_dir)),
        draws=opts.draws, goals=goals, latency=prep.latency,
    )
    for spec, why in searcher.left_out:
        say(f"not queued: {spec.label}: {why}")
    if prep.latency is not None and prep.latency.measures_here:
        # the draws' latencies are measured while no trial trains: a wave of trials is drawn at once
        per_trial = max(opts.ray.cpus_per_trial, 1e-9)
        searcher.ahead = opts.ray.max_concurrent or max(1, int(resources.get("CPU", 1) // per_trial))
        say(
            "latencies measured here while no trial trains (a timing beside a training is wrong): "
            f"{searcher.ahead} points drawn and measured at once, then trained together"
        )
    trainable = tune.with_resources(
        tune.with_parameters(
            proxy_trial, data=prep.data, recipe=opts.recipe.as_dict(), threads=max(1, int(opts.ray.cpus_per_trial)),
            memory_limit=opts.ray.max_memory_per_trial,
            evaluate_at=evaluation_points(opts.scheduler, opts.recipe.epochs) if opts.evaluate_at is None else list(opts.evaluate_at),
        ),
        {"cpu": opts.ray.cpus_per_trial, "gpu": gpus},
    )
    scratch = tempfile.mkdtemp(prefix="nas-ray-")  # Ray's own logs; the study is the record
    progress = SearchProgress(searcher, prep.study, opts.trials, console, started)
    heartbeat = _Heartbeat(searcher, prep.study)
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=opts.trials,
            max_concurrent_trials=opts.ray.max_concurrent,
            time_budget_s=opts.time_limit,
            trial_dirname_creator=lambda trial: f"trial_{trial.trial_id}",
        ),
        run_config=tune.RunConfig(
            name="search", storage_path=scratch, verbose=0, callbacks=[progress], log_to_file=True
        ),
    )
    try:
        heartbeat.start()
        with progress:
            fit_started = time.perf_counter()
            tuner.fit()
            if opts.time_limit is not None and time.perf_counter() - fit_started >= opts.time_limit:
                searcher.cut_unfinished()  # Ray stopped them at the time limit without a word to the searcher
    finally:
        heartbeat.stop()
        searcher.fail_unfinished("interrupted: the search stopped before the trial finished")
        shutil.rmtree(scratch, ignore_errors=True)
    return {
        "study": prep.study.study_name,
        "storage": masked(opts.storage),
        "seconds": time.perf_counter() - started,
        "tally": searcher.tally,
        "resumed": prep.resumed,
        "latency": prep.latency,
    }


class _Heartbeat:
    """Records a heartbeat for every trial in training, so a killed search's trials can be told apart
    from a live one's, and fails the trials of searches that stopped (optuna.storages.fail_stale_trials)
    so their points are re-queued while this search runs, not only when the next one starts. Optuna
    runs such a thread only inside study.optimize; with ask-and-tell we run it ourselves."""

    def __init__(self, searcher, study: optuna.Study):
        self.searcher, self.study = searcher, study
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="nas-heartbeat")

    def start(self):
        self._thread.start()

    def stop(self):
        self._stop.set()

    def _run(self):
        interval = min(5.0, HEARTBEAT_SECONDS / 3)
        beats = 0
        while not self._stop.wait(interval):
            self.searcher.beat()
            beats += 1
            if beats % max(1, round(HEARTBEAT_SECONDS / interval)) == 0:
                try:
                    fail_stale_trials(self.study)
                except Exception:  # noqa: BLE001 - a storage hiccup: the next round will do
                    pass
