"""Scale benchmark: the commands on studies of 10,000 trials, beside the same figures at 100 trials.

The studies are made through Optuna's API as a search records its trials (parameters with their
distributions, the record's user attributes, the budget constraint, the exported config as an artifact),
on SQLite and on PostgreSQL (a throwaway server from Debian's packages), once: they are kept in --folder
and reused. Printed per storage and size, each a wall time of the command as a user runs it:
- `nas studies` with an empty trial cache (the first command on this machine), then with it;
- `nas pareto --json`, `nas report`, `nas dashboard` until it serves;
- the dashboard's study page in headless Chromium: first contentful paint, and until its Pareto front is drawn;
- a resumed search (tpe): its start (storage, study checks, the first read, the draft study), and its
  overhead per suggestion (reading what changed, the draws, the claim) over --suggestions suggestions.
Goals: studies and pareto <= 2 s, report and dashboard start <= 10 s, the page <= 5 s, <= 0.5 s per suggestion.

    python benchmarks/scale.py [--folder /tmp/nas-scale] [--trials 10000] [--small 100] [--no-postgres]
    python benchmarks/scale.py build --storage URL --trials N      (one study, for other experiments)

Concurrent searches on one PostgreSQL study: benchmarks/workers.py.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # faultlib: run `nas` as users do, a throwaway PostgreSQL server

from faultlib import BIN, Postgres, free_port, wait_for_port  # noqa: E402

BUDGET = "4.5G"
OVER_BUDGET = 0.0454  # the share of trials that are queued points over the budget, told FAIL (the study: 454 of 10,000)
STUDY = "scale"
RECIPE = {"windows": "clamp"}  # the recipe the studies kept in --folder were built with (any recipe times the same)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
GOALS = {"studies": 2, "pareto": 2, "report": 10, "dashboard": 10, "page": 5, "suggestion": 0.5}


# --- the studies --------------------------------------------------------------------------------------------
def build_study(url: str, name: str, trials: int, artifact_dir: Path, seed: int = 0, builders: int = 1) -> None:
    """A search study of `trials` trials on the unified space, each as the searcher leaves it: parameters with
    their distributions, the record's user attributes, the budget constraint, the exported config as an
    artifact, told COMPLETE with (proxy top-1, MACs); a share are queued points over the budget, told FAIL.
    `builders` processes (each its own seed) fill one study together, each its share of what is missing."""
    import optuna
    from optuna.artifacts import FileSystemArtifactStore, upload_artifact
    from optuna.trial import TrialState

    from dashboards.optuna_internals import frozen as stored, new_trial
    from nas.export import dump, model_config
    from nas.study import open_search_study, open_storage
    from searchspace import count, format_macs, load_space, parse_macs
    from trials import ProxyRecipe
    from trials import record

    space, budget, recipe = load_space("unified"), parse_macs(BUDGET), ProxyRecipe(**RECIPE)
    study, _ = open_search_study(open_storage(url, heartbeat=False), name, space, budget, "fashion-mnist", recipe)
    store = FileSystemArtifactStore(str(artifact_dir))
    artifact_dir.mkdir(parents=True, exist_ok=True)
    scratch = optuna.create_study(sampler=optuna.samplers.RandomSampler())  # gives each point its distributions
    rng = random.Random(seed)
    todo = math.ceil(max(0, trials - len(study.get_trials(deepcopy=False))) / builders)
    over = round(todo * OVER_BUDGET)
    made, seen, started = 0, set(), time.perf_counter()
    while made < todo:
        over_budget = (made * over) // todo != ((made + 1) * over) // todo  # `over` of them, spread evenly
        spec = space.sample(rng)
        params, macs = count(spec)
        if spec.id in seen or (macs > budget) != over_budget:
            continue
        seen.add(spec.id)
        scratch.enqueue_trial(space.params_of(spec))
        drawn = scratch.ask()
        space.suggest(drawn)
        frozen = drawn  # its parameters and distributions
        attrs = {record.SPEC_ID: spec.id, record.PROXY_ID: recipe.proxy_id(spec)}
        if macs > budget:
            attrs[record.FAIL_REASON] = f"not trained: {format_macs(macs)} MACs is over the budget of {format_macs(budget)}"
            study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL, params=frozen.params, distributions=frozen.distributions, user_attrs=attrs))
            made += 1
            continue
        top1 = min(95.0, max(10.0, 60 + 8 * math.log(macs / 1e9) + rng.gauss(0, 3)))
        attrs.update({
            record.SEARCH_PROCESS: f"bench:{seed}", record.SPEC: json.dumps(spec.to_dict(), sort_keys=True), record.PARAMS: params,
            record.MACS: macs, record.PROXY_TOP1: round(top1, 2), record.PROXY_LOSS: round(3 - top1 / 40, 3), record.TRAIN_LOSS_SUM: 4.2,
            record.TRAIN_SECONDS: 30.0 + rng.random() * 30, record.IMAGES_PER_SECOND: 400.0, record.DEVICE: "cpu", record.EPOCHS: recipe.epochs,
        })
        template = optuna.trial.create_trial(
            state=TrialState.RUNNING, params=frozen.params, distributions=frozen.distributions, user_attrs=attrs,
            constraints={record.BUDGET_CONSTRAINT: macs - budget},
        )
        trial = new_trial(study, template)
        config = artifact_dir / record.config_file(name, trial.number)
        config.write_text(dump(model_config(study, stored(trial), url), "yaml"))
        upload_artifact(artifact_store=store, file_path=str(config), study_or_trial=trial, mimetype="application/yaml")
        config.unlink()
        study.tell(trial, [top1, macs])
        made += 1
        if made % 500 == 0:
            print(f"  {made} of {todo} trials ({time.perf_counter() - started:.0f}s)", flush=True)


def count_trials(url: str, name: str = STUDY) -> int:
    import optuna

    from nas.study import open_storage

    storage = open_storage(url, heartbeat=False)
    if name not in {s.study_name for s in storage.get_all_studies()}:
        return 0
    return len(optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False))


def ensure_study(url: str, trials: int, folder: Path, builders: int = 1) -> None:
    """Build the study unless the storage holds it already (several builder processes fill it faster)."""
    have = count_trials(url)
    if have >= trials:
        return
    print(f"building {trials} trials in {url.split('@')[-1]} ({have} there)", flush=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runs = [
        subprocess.Popen(
            [sys.executable, __file__, "build", "--storage", url, "--trials", str(trials), "--seed", str(seed),
             "--builders", str(builders), "--artifact-dir", str(folder / "artifacts")], env=env,
        )
        for seed in range(builders)
    ]
    if any(run.wait() for run in runs):
        raise SystemExit("building the study failed")


# --- what a user waits for ------------------------------------------------------------------------------------
def timed(*args, cwd: Path, env: dict) -> tuple[float, float]:
    """Wall seconds of `nas ARGS`, and the CPU seconds its process used (on a quiet machine the wall time is
    about that plus the database's own time; on a loaded one, the wall time grows with the load)."""
    start = time.perf_counter()
    process = subprocess.Popen([str(BIN / "nas"), *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"nas {' '.join(args)} failed:\n{process.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime


def dashboard_times(url: str, cwd: Path, env: dict, limit: float) -> dict:
    """`nas dashboard` until it serves (infinite: not within `limit` seconds), then its study page in headless Chromium."""
    port = free_port()
    start = time.perf_counter()
    server = subprocess.Popen(
        [str(BIN / "nas"), "dashboard", "--storage", url, "--port", str(port), "--artifact-dir", str(cwd / "dashboard-artifacts")],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        if not wait_for_port(port, server, timeout=limit):
            return {"dashboard": math.inf}
        times = {"dashboard": time.perf_counter() - start}
        if CHROMIUM:
            import urllib.request

            studies = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=600))["study_summaries"]
            study_id = next(s["study_id"] for s in studies if s["study_name"] == STUDY)
            times.update(page_times(f"http://127.0.0.1:{port}/dashboard/studies/{study_id}", STUDY, cwd))
        return times
    finally:
        server.terminate()
        server.wait(timeout=60)


class DevTools:
    """Chromium driven over its DevTools protocol on a pipe (--remote-debugging-pipe: commands on fd 3,
    answers on fd 4, each a JSON message ended by a NUL byte): no WebSocket library needed."""

    FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1400,1000"]

    def __init__(self, profile: Path):
        to_browser, self._out = os.pipe()
        self._in, from_browser = os.pipe()

        def wire():  # in the child: its ends on fds 3 and 4 (duplicated high first, so neither overwrites the other)
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in (to_browser, from_browser)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.process = subprocess.Popen(
            [CHROMIUM, *self.FLAGS, "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"],
            preexec_fn=wire, pass_fds=(3, 4), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(to_browser)
        os.close(from_browser)
        self._next, self._buffer, self.session = 0, b"", None
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def call(self, method: str, **params) -> dict:
        self._next += 1
        message = {"id": self._next, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            message["sessionId"] = self.session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buffer:
                chunk = os.read(self._in, 1 << 16)
                if not chunk:
                    raise RuntimeError("Chromium closed its DevTools pipe")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def close(self):
        self.process.kill()
        self.process.wait(timeout=30)
        os.close(self._out)
        os.close(self._in)


def page_times(url: str, name: str, cwd: Path, timeout: float = 600) -> dict:
    """First contentful paint of the study page, and the wall time until its Pareto front is drawn with the
    study's name on the page (what a user waits for), both from the navigation's start."""
    browser = DevTools(Path(tempfile.mkdtemp(prefix="chromium-", dir=cwd)))
    try:
        browser.call("Page.enable")
        start = time.perf_counter()
        browser.call("Page.navigate", url=url)
        drawn = f"document.body && document.body.innerText.includes({json.dumps(name)}) && !!document.querySelector('.js-plotly-plot')"
        while not browser.evaluate(drawn):
            if time.perf_counter() - start > timeout:
                raise SystemExit(f"the study page did not draw its front in {timeout:.0f}s")
            time.sleep(0.05)
        front = time.perf_counter() - start
        paint = browser.evaluate("(performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime || null")
        return {"first_paint": paint / 1000 if paint else None, "page": front}
    finally:
        browser.close()


def resume_times(url: str, suggestions: int, env: dict) -> dict:
    """A resumed search's start and overhead per suggestion, in a process of its own (a cold or warm trial cache
    as the caller's environment says)."""
    done = subprocess.run(
        [sys.executable, __file__, "resume", "--storage", url, "--suggestions", str(suggestions)],
        env=env, capture_output=True, text=True, timeout=7200,
    )
    if done.returncode:
        raise SystemExit(f"the resumed search failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def resume(url: str, suggestions: int, seed: int = 0) -> dict:
    """What `nas search` does before and between trainings, on the stored study, timed: each suggestion is
    answered at once with a made-up score (no training: the benchmark times the search's own work)."""
    import nas.search  # noqa: F401 - `nas search` imports it: the same import cost
    from nas.searcher import StudySearcher
    from nas.study import fail_stale_trials, make_sampler, open_search_study, open_storage
    from searchspace import count, load_space, parse_macs
    from trials import ProxyRecipe

    start, start_cpu = time.perf_counter(), time.process_time()
    space, budget, recipe = load_space("unified"), parse_macs(BUDGET), ProxyRecipe(**RECIPE)
    study, _ = open_search_study(open_storage(url), STUDY, space, budget, "fashion-mnist", recipe)
    fail_stale_trials(study)
    searcher = StudySearcher(study, space, budget, recipe, suggestions, [], make_sampler("tpe", seed, suggestions))
    figures = {"start": time.perf_counter() - start, "start_cpu": time.process_time() - start_cpu}
    rng, wall, cpu = random.Random(seed), [], []
    for i in range(suggestions):
        tick, tick_cpu = time.perf_counter(), time.process_time()
        config = searcher.suggest(f"bench{i}")
        wall.append(time.perf_counter() - tick)
        cpu.append(time.process_time() - tick_cpu)
        macs = count(config["spec"]).macs
        searcher.on_trial_complete(f"bench{i}", {"epoch": recipe.epochs, "proxy_top1": 50 + rng.random() * 30, "macs": macs})
    return {**figures, "suggestion": statistics.mean(wall), "suggestion_cpu": statistics.mean(cpu)}


def measure(url: str, folder: Path, suggestions: int, browser: bool = True, code: Path = ROOT, limit: float = 3600) -> dict:
    """Every figure on one study, of the `nas` in `code`: the first command with an empty trial cache, then
    the rest with it (a checkout without the cache has none: then every command reads every trial)."""
    cwd = Path(tempfile.mkdtemp(prefix="run-", dir=folder))
    env = {**os.environ, "PYTHONPATH": str(code), "NAS_CACHE_DIR": str(cwd / "cache")}
    figures = {"trials": count_trials(url)}
    commands = {
        "studies_cold": ("studies", "--storage", url), "studies": ("studies", "--storage", url),
        "pareto": ("pareto", "--storage", url, "--json"), "report": ("report", "--storage", url, "-o", str(cwd / "report.html")),
    }
    for key, args in commands.items():
        figures[key], figures[f"{key}_cpu"] = timed(*args, cwd=cwd, env=env)
    if browser:
        first = dashboard_times(url, cwd, env, limit)  # it exports the configs the study lacks: not what is timed
        figures.update(dashboard_times(url, cwd, env, limit) if first["dashboard"] < math.inf else first)
    figures.update(resume_times(url, suggestions, env))
    shutil.rmtree(cwd, ignore_errors=True)
    return figures


ROWS = [
    ("`nas studies`, empty trial cache", "studies_cold", None),
    ("`nas studies`", "studies", "studies"),
    ("`nas pareto --json`", "pareto", "pareto"),
    ("`nas report`", "report", "report"),
    ("`nas dashboard` until it serves", "dashboard", "dashboard"),
    ("study page: first contentful paint", "first_paint", None),
    ("study page: front drawn", "page", "page"),
    ("resumed search: start", "start", None),
    ("resumed search: per suggestion", "suggestion", "suggestion"),
]


def cell(figures: dict, key: str) -> str:
    value = figures.get(key)
    if value is None:
        return "-"
    text = f"> {figures.get('limit', 0):.0f}" if value == math.inf else f"{value:.2f}"
    return text + (f" ({figures[key + '_cpu']:.2f} CPU)" if key + "_cpu" in figures else "")


def print_table(storage: str, small: dict, large: dict) -> None:
    print(f"\n{storage}: {small['trials']:,} and {large['trials']:,} trials, wall seconds (CPU seconds of the command's process)")
    print(f"| operation | {small['trials']:,} trials | {large['trials']:,} trials | goal |")
    print("|---|---|---|---|")
    for label, key, goal in ROWS:
        if key not in large:
            continue
        verdict = "-" if goal is None else f"<= {GOALS[goal]} ({'met' if large[key] <= GOALS[goal] else 'MISSED'})"
        print(f"| {label} | {cell(small, key)} | {cell(large, key)} | {verdict} |")


def postgres_url(folder: Path) -> tuple[Postgres, str]:
    server = Postgres(folder / "pg")
    return server, server.start()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", default=os.path.join(tempfile.gettempdir(), "nas-scale"), help="where the studies are kept and reused")
    parser.add_argument("--trials", type=int, default=10000)
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--suggestions", type=int, default=10)
    parser.add_argument("--builders", type=int, default=2, help="processes that build a study together")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-browser", action="store_true", help="skip the dashboard and Chromium")
    parser.add_argument("--code", default=str(ROOT), help="the checkout whose `nas` is timed (another one gives the figures before a change)")
    parser.add_argument("--limit", type=float, default=3600, help="seconds to wait for the dashboard to serve")
    parser.add_argument("--no-build", action="store_true", help="time the studies as they are, however many trials they hold")
    sub = parser.add_subparsers(dest="command")
    b = sub.add_parser("build")
    b.add_argument("--storage", required=True)
    b.add_argument("--study", default=STUDY)
    b.add_argument("--trials", type=int, default=10000)
    b.add_argument("--artifact-dir", default="scale-artifacts")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--builders", type=int, default=1, help="processes filling the study together")
    r = sub.add_parser("resume")
    r.add_argument("--storage", required=True)
    r.add_argument("--suggestions", type=int, default=10)
    args = parser.parse_args()

    if args.command == "build":
        start = time.perf_counter()
        build_study(args.storage, args.study, args.trials, Path(args.artifact_dir), args.seed, args.builders)
        print(f"built {args.trials} trials in {time.perf_counter() - start:.0f}s")
        return
    if args.command == "resume":
        print(json.dumps(resume(args.storage, args.suggestions)))
        return
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    print(f"scale benchmark; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the start", flush=True)
    storages = [] if args.no_sqlite else [("SQLite", lambda n: f"sqlite:///{folder}/scale-{n}.db")]
    server = None
    if not args.no_postgres:
        server, url = postgres_url(folder)
        databases = {args.small: "nas_small", args.trials: "nas"}
        server.create_database("nas_small")
        storages.append(("PostgreSQL", lambda n: url.rsplit("/", 1)[0] + "/" + databases[n]))
    try:
        for label, url_of in storages:
            for n in (args.small, args.trials) if not args.no_build else ():
                ensure_study(url_of(n), n, folder, args.builders)
            small, large = ({"limit": args.limit, **measure(url_of(n), folder, args.suggestions, not args.no_browser, Path(args.code), args.limit)}
                            for n in (args.small, args.trials))
            print_table(label, small, large)
    finally:
        if server is not None and server.started:
            server.stop()
    print(f"\nload average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the end (the timings are of a shared machine)")


if __name__ == "__main__":
    main()
