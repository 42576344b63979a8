"""Studies in an RDB storage: opening a storage by SQLAlchemy URL (read through a trial cache kept on disk,
nas.trial_cache), creating or resuming a search study, samplers by name. Our code talks to an optuna.Study,
never to SQLite or PostgreSQL directly.
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
import sqlalchemy
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from searchspace import NasError, format_macs
from trials import ProxyRecipe
from trials import record
from trials.goals import Goals

from . import DEFAULT_STORAGE  # noqa: F401  (where the commands' options find it)
from .trial_cache import DiskCachedStorage

if TYPE_CHECKING:
    from searchspace import SearchSpace

SAMPLERS = ("tpe", "nsga2", "random", "gp")
# A trial whose process stops (kill -9, a lost machine) is failed after this many seconds without a
# heartbeat, and its point re-queued once (Optuna's RetryFailedTrialCallback).
HEARTBEAT_SECONDS = int(os.environ.get("NAS_HEARTBEAT_SECONDS", 30))
GRACE_SECONDS = 3 * HEARTBEAT_SECONDS
LOCK_WAIT_SECONDS = HEARTBEAT_SECONDS  # a heartbeat that waits this long for SQLite's lock is still in time

warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
# We run the heartbeat ourselves around ask-and-tell (nas.search._Heartbeat), not only inside optimize().
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
optuna.logging.set_verbosity(optuna.logging.WARNING)


def masked(url: str) -> str:
    """The storage URL with its password hidden, for output, logs and provenance."""
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return "<unparseable storage URL>"


def open_storage(url: str, heartbeat: bool = True) -> optuna.storages.BaseStorage:
    """The storage at a SQLAlchemy URL, read through a trial cache kept on disk (nas.trial_cache), or the
    Optuna gRPC storage proxy at grpc://host:port (`nas storage-proxy`); a bad URL or an unreachable server
    is a one-line NasError."""
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise NasError(f"--storage {url!r} is not a SQLAlchemy URL (e.g. sqlite:///nas_studies.db, postgresql://user@host/db)") from None
    if parsed.get_backend_name() == "grpc":
        return _grpc_proxy(parsed)
    # (a SQLite URI filename such as file:x.db?mode=ro is left to SQLite itself)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:") and not parsed.database.startswith("file:"):
        folder = Path(parsed.database).expanduser().resolve().parent
        if not folder.is_dir():
            raise NasError(f"--storage {masked(url)}: the folder {folder} does not exist")
        if not os.access(folder, os.W_OK) or (Path(parsed.database).exists() and not os.access(parsed.database, os.W_OK)):
            raise NasError(f"--storage {masked(url)}: {parsed.database} is not writable")
    options = dict(heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS) if heartbeat else {}
    # several searches may share one SQLite file: wait for its lock rather than fail after 5 s, but never as
    # long as the grace period, or a live trial whose heartbeat waits for the lock would be failed as stale
    engine = {"connect_args": {"timeout": LOCK_WAIT_SECONDS}} if parsed.get_backend_name() == "sqlite" else {"pool_pre_ping": True}
    identity = _identity(parsed)
    for attempt in range(5):
        try:
            backend = RDBStorage(
                url,
                engine_kwargs=engine,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1) if heartbeat else None,
                **options,
            )
            return DiskCachedStorage(backend, identity) if identity else backend
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError) as exc:
            # two searches opening a new storage at once race to create Optuna's tables; the loser
            # finds them made and only has to open it again
            if "already exists" not in str(exc) and "UNIQUE constraint" not in str(exc) or attempt == 4:
                raise NasError(f"cannot open the study storage {masked(url)}: {_first_line(exc)}") from None
            time.sleep(0.5 * (attempt + 1))
        except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as exc:
            raise NasError(f"cannot open the study storage {masked(url)}: {_first_line(exc)}") from None


def _grpc_proxy(parsed: sqlalchemy.engine.URL) -> optuna.storages.BaseStorage:
    """A client of Optuna's gRPC storage proxy: many searches share the proxy's one connection pool and trial
    cache instead of each opening the database. The proxy carries no heartbeats: the trials of a search
    killed meanwhile stay RUNNING until a search on the database itself fails them."""
    try:
        from optuna.storages import GrpcStorageProxy

        proxy = GrpcStorageProxy(host=parsed.host or "localhost", port=parsed.port or 13000)
        proxy.wait_server_ready(timeout=30)
    except ImportError:
        raise NasError("--storage grpc://... needs grpcio: pip install 'nas-unified[grpc]'") from None
    except Exception as exc:  # noqa: BLE001 - grpc's FutureTimeoutError and connection errors alike
        raise NasError(f"cannot reach the storage proxy at {parsed.render_as_string()}: {_first_line(exc)}") from None
    return proxy


def _identity(parsed: sqlalchemy.engine.URL) -> str | None:
    """The database a URL names, the same however it is written: the SQLite file's absolute path, or the
    server URL without driver and password; None for an in-memory database (nothing outlives the process)."""
    if parsed.get_backend_name() != "sqlite":
        return parsed.set(drivername=parsed.get_backend_name(), password=None, query={}).render_as_string()
    if parsed.database in (None, "", ":memory:") or parsed.database.startswith("file:"):
        return None
    return "sqlite:///" + str(Path(parsed.database).expanduser().resolve())


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


def make_sampler(name: str, seed: int | None, trials: int) -> optuna.samplers.BaseSampler:
    if name == "tpe":  # multivariate + group: the space is conditional; constant liar: trials run in parallel
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=True, group=True, constant_liar=True, n_startup_trials=max(4, min(10, trials // 3))
        )
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, trials // 2)))
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "gp":
        # the space is conditional: GP models the dimensions every trial has, the rest are drawn at random
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=max(4, min(10, trials // 3)), warn_independent_sampling=False)
    raise NasError(f"unknown sampler {name!r} (samplers: {', '.join(SAMPLERS)})")


def space_digest(space: SearchSpace) -> str:
    return hashlib.sha256(Path(space.source).read_bytes()).hexdigest()


@contextmanager
def storage_errors(url: str):
    """A storage that fails mid-way (read-only file, server gone) is a one-line NasError, not a traceback."""
    try:
        yield
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise NasError(f"the study storage {masked(url)} failed: {_first_line(exc)}") from None


def open_search_study(
    storage: RDBStorage,
    name: str,
    space: SearchSpace,
    budget: int,
    data: str,
    recipe: ProxyRecipe,
    role: str = "search",
    goals: Goals | None = None,
    latency: dict | None = None,
) -> tuple[optuna.Study, bool]:
    """Create the study, or resume it when it exists and was run with the same space file, budget, data,
    recipe (another recipe would put points of another fidelity on the same front), objectives and
    constraints (`goals`, default: top-1 and MACs within `budget`) and latency device (`latency`: what the
    latency source records, nas.latency_source). Returns (study, resumed). The stored study's own sampler
    decides nothing: the searcher draws in a copy (nas.drafts)."""
    goals = goals or Goals.of(budget)
    existing = {s.study_name for s in storage.get_all_studies()}
    resumed = name in existing
    study = optuna.create_study(
        study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler(), directions=goals.directions,
        load_if_exists=True,
    )
    wanted = {
        record.STUDY_BUDGET: budget,
        record.STUDY_SPACE: space.source,
        record.STUDY_SPACE_HASH: space_digest(space),
        record.STUDY_DATA: data,
        record.STUDY_RECIPE: recipe.as_dict(),
        record.STUDY_RECIPE_KEY: record.recipe_key(recipe, data),
        record.STUDY_ROLE: role,
    }
    if resumed:
        stored = dict(study.user_attrs)
        if record.STUDY_RECIPE in stored:  # fields added since the study was made take their old behaviour
            stored[record.STUDY_RECIPE] = record.stored_recipe(study).as_dict()
        checks = ((record.STUDY_SPACE_HASH, "space file"), (record.STUDY_BUDGET, "budget"), (record.STUDY_DATA, "data"), (record.STUDY_RECIPE, "proxy recipe"))
        for key, label in checks:
            if key in stored and stored[key] != wanted[key]:
                was, now = stored[key], wanted[key]
                if key == record.STUDY_BUDGET:
                    was, now = format_macs(was), format_macs(now)
                if key == record.STUDY_RECIPE:  # only what differs, as the options that set it
                    fields = [k for k in now if was.get(k) != now[k]]
                    was = ", ".join(f"{k} {was.get(k)!r}" for k in fields)
                    option = {"subset": "--subset", "val_size": "--held-out", "rung_val_size": "--rung-held-out"}
                    now = ", ".join(f"{now[k]!r} ({option.get(k, '--proxy-' + k.replace('_', '-'))})" for k in fields)
                if key == record.STUDY_SPACE_HASH:
                    was = f"{stored.get(record.STUDY_SPACE, '?')} (sha256 {was[:12]})"
                    now = f"{space.source} (sha256 {now[:12]}), whose content differs"
                raise NasError(
                    f"study {name!r} was run with {label} {was}, not {now}; one study holds one space, budget, data "
                    "set and fidelity: use the same options or another --study"
                )
        _check_goals(study, name, goals, latency)
    if not resumed or record.STUDY_RECIPE_KEY not in study.user_attrs:
        if not resumed:
            study.set_metric_names(goals.labels)
        for key, value in wanted.items():
            study.set_user_attr(key, value)
    if not resumed:
        study.set_user_attr(record.STUDY_GOALS, goals.to_dict())
        if latency:
            study.set_user_attr(record.STUDY_LATENCY, latency)
    return study, resumed


def _check_goals(study: optuna.Study, name: str, goals: Goals, latency: dict | None) -> None:
    """A resumed study keeps its objectives, constraints and latency device: a front of other objectives, or of
    latencies of another machine, is not the same front."""
    stored = Goals.of_study(study)
    if stored != goals:
        raise NasError(
            f"study {name!r} was run to {stored.describe()}, not to {goals.describe()}; one study holds one set of "
            "objectives and constraints: use the same options or another --study"
        )
    if latency and study.user_attrs.get(record.STUDY_LATENCY):
        from searchspace.latency import Device  # what decides a latency: Device.HARDWARE (loads torch)

        was, now = study.user_attrs[record.STUDY_LATENCY]["device"], latency["device"]
        differ = [k for k in Device.HARDWARE if was.get(k) != now.get(k)]
        if differ:
            raise NasError(
                f"study {name!r} holds latencies of another device ({', '.join(f'{k} {was.get(k)!r}, not {now.get(k)!r}' for k in differ)}): "
                "give the same --latency-table, or search on that machine, or use another --study"
            )


def settles_its_point(t: optuna.trial.FrozenTrial) -> bool:
    """Whether a stored trial settles its point, so that it is never queued again: trained (COMPLETE, or
    PRUNED after training: the scheduler stopped it), in training, or failed in its own training (diverged,
    out of memory: a retry fails the same way). A point whose trial was interrupted (a stopped search), cut
    by the time limit or not trained (a collision) is queued again."""
    if t.user_attrs.get(record.CUT_BY_TIME_LIMIT):
        return False
    if t.state in (TrialState.COMPLETE, TrialState.RUNNING):
        return True
    if t.state == TrialState.PRUNED:
        return bool(t.user_attrs.get(record.EPOCHS))
    reason = t.user_attrs.get(record.FAIL_REASON)
    return t.state == TrialState.FAIL and bool(reason) and not reason.startswith(("interrupted", "not trained"))


def fail_stale_trials(study: optuna.Study) -> list[int]:
    """Fail the trials of searches that stopped without finishing them (no heartbeat); their points
    are re-queued once. Returns their numbers."""
    running = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    optuna.storages.fail_stale_trials(study)
    now_failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    return sorted(t.number for t in now_failed if t.number in running)


def load_study(storage_url: str, name: str | None) -> optuna.Study:
    """An existing study by name (or the only one in the storage); unknown names list what exists."""
    storage = open_storage(storage_url, heartbeat=False)
    with storage_errors(storage_url):
        names = [s.study_name for s in storage.get_all_studies()]
    if name is None:
        if len(names) == 1:
            name = names[0]
        else:
            raise NasError(
                f"{masked(storage_url)} holds {len(names)} studies; name one with --study: {', '.join(names) or 'none'}"
            )
    if name not in names:
        raise NasError(f"no study {name!r} in {masked(storage_url)} (studies: {', '.join(names) or 'none'})")
    return optuna.load_study(study_name=name, storage=storage)
