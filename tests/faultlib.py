"""Helpers of the process-level tests and the fault suite: run `nas` as users do, wait for its ports,
kill it, start a PostgreSQL server or the nodes of a Ray cluster, and check that a study survived (no
finished trial lost, no point trained twice, no corrupt rows). Used by tests/test_faults.py (and through
it by benchmarks/faults.py), test_dashboard.py, test_search.py, test_bad_input.py, test_cluster.py and
benchmarks/scale.py.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent
FAST = ["--space", "tiny", "--subset", "256", "--held-out", "512", "--proxy-epochs", "2", "--seed", "0", "--scheduler", "none"]
STUDY = "tiny-4.5G-fashion-mnist"


def env(heartbeat: int = 2) -> dict:
    return {**os.environ, "NAS_HEARTBEAT_SECONDS": str(heartbeat)}


def nas(*args, cwd, timeout=900, heartbeat=2):
    return subprocess.run([str(BIN / "nas"), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env(heartbeat))


def start_nas(*args, cwd, heartbeat=2, extra_env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "nas"), *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**env(heartbeat), **(extra_env or {})}, start_new_session=True,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen | None = None, timeout: float = 60) -> bool:
    """True once something listens on 127.0.0.1:port; False if `process` exits or time runs out."""

    def listening() -> bool:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    return wait_for(listening, timeout)


# --- what a study holds -----------------------------------------------------------------------------------
@dataclass
class Snapshot:
    complete: dict = field(default_factory=dict)  # number -> (values, spec_id)
    trained_ids: list = field(default_factory=list)  # spec ids of trials that trained (not answered)
    states: dict = field(default_factory=dict)


def snapshot(storage_url: str, name: str = STUDY) -> Snapshot:
    import optuna

    from trials import record

    try:
        study = optuna.load_study(study_name=name, storage=storage_url)
    except KeyError:
        return Snapshot()
    snap = Snapshot()
    for t in study.get_trials(deepcopy=False):
        snap.states[t.state.name] = snap.states.get(t.state.name, 0) + 1
        if t.state.name == "COMPLETE":
            snap.complete[t.number] = (tuple(t.values), t.user_attrs.get(record.SPEC_ID))
        trained = t.user_attrs.get(record.EPOCHS) and record.DUPLICATE_OF not in t.user_attrs
        if trained and t.state.name in ("COMPLETE", "PRUNED"):
            snap.trained_ids.append(t.user_attrs[record.SPEC_ID])
    return snap


def lost(before: Snapshot, after: Snapshot) -> int:
    """Finished trials of `before` that are gone or changed in `after`."""
    return sum(1 for number, row in before.complete.items() if after.complete.get(number) != row)


def duplicates(snap: Snapshot) -> int:
    return len(snap.trained_ids) - len(set(snap.trained_ids))


def sqlite_ok(path: Path) -> bool:
    with sqlite3.connect(path) as db:
        return db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def wait_for(predicate, timeout: float, every: float = 0.5) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return False


def kill_tree(process: subprocess.Popen) -> None:
    """kill -9 of the search, as a crash or an OOM killer would do it."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=60)


def worker_pids(search: subprocess.Popen) -> list[int]:
    """The Ray Tune trial workers (process title ray::ImplicitFunc...) of a search started by start_nas: its
    own session holds its local Ray, so other Rays on the machine are never touched."""
    done = subprocess.run(["pgrep", "-s", str(search.pid), "-f", "ray::ImplicitFunc"], capture_output=True, text=True)
    return [int(p) for p in done.stdout.split()]


# --- a PostgreSQL server from Debian's packages, on loopback ----------------------------------------------
class Postgres:
    """A server on loopback with trust authentication and a database 'nas'. A root that holds one from an
    earlier start is started again, on the same port, or used as it runs (benchmarks/scale.py keeps its
    studies there); `started` tells whether this object started it, and so should stop it."""

    def __init__(self, root: Path):
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            raise RuntimeError("Debian's postgresql is not installed (apt-get install postgresql)")
        self.bin = Path(found[-1]).parent
        self.root = root
        self.port = int((root / "port").read_text()) if (root / "port").exists() else free_port()
        self.data = root / "pgdata"
        self.started = False
        self.as_user = []
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as its own user
            if shutil.which("runuser") is None:
                raise RuntimeError("running as root without runuser to start PostgreSQL as 'postgres'")
            self.as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, *cmd, **kw):
        return subprocess.run([*self.as_user, *cmd], capture_output=True, text=True, timeout=120, **kw)

    def start(self) -> str:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.as_user:
            shutil.chown(self.root, "postgres", "postgres")
        fresh = not (self.data / "PG_VERSION").exists()
        if fresh:
            done = self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "nas", "--auth=trust", "-E", "UTF8")
            if done.returncode:
                raise RuntimeError(f"initdb failed: {done.stderr[-500:]}")
        if self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "status").returncode:  # not running yet
            options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
            done = self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "start")
            if done.returncode:
                raise RuntimeError(f"pg_ctl start failed: {done.stderr[-500:]}")
            self.started = True
        if fresh:
            self.create_database("nas")
            (self.root / "port").write_text(str(self.port))
        # the password is ignored by trust auth; it is there to prove it never reaches any output
        return f"postgresql+psycopg2://nas:pg-secret-pw@127.0.0.1:{self.port}/nas"

    def create_database(self, name: str) -> None:
        done = self._run(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "nas", name)
        if done.returncode and "already exists" not in done.stderr:
            raise RuntimeError(f"createdb failed: {done.stderr[-500:]}")

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")


# --- the nodes of a Ray cluster, as `ray start` makes them -------------------------------------------------
class RayNode:
    """A Ray node started with `ray start --block` in a session of its own, with its own ports and temp
    folder, so several share one machine; killing the processes of that session (its raylet puts each
    worker in a process group of its own, not a session) is the node dying. `address`: join that head;
    else this is the head."""

    def __init__(self, env: dict, cpus: int = 1, address: str | None = None):
        self.temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # short: Ray's socket paths stay under 108 bytes
        ports = ["--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
                 "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port"]
        args = [str(BIN / "ray"), "start", "--block", f"--num-cpus={cpus}", f"--temp-dir={self.temp}"]
        args += [f"{option}={free_port()}" for option in ports]
        if address is None:
            self.address = f"127.0.0.1:{free_port()}"
            args += ["--head", f"--port={self.address.rsplit(':', 1)[1]}", "--include-dashboard=false"]
        else:
            self.address = address
            args += [f"--address={address}"]
        self.log = self.temp / "start.log"
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 180) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"ray start exited with code {self.process.returncode}: {self.log.read_text()[-2000:]}")
            return "block forever" in self.log.read_text()

        if not wait_for(ready, timeout):
            raise RuntimeError(f"the Ray node did not start in {timeout:.0f}s: {self.log.read_text()[-2000:]}")

    def pids(self, pattern: str | None = None) -> list[int]:
        """This node's processes (`pattern`: those whose command line has it, e.g. ray::ImplicitFunc, a trial)."""
        done = subprocess.run(["pgrep", "-s", str(self.process.pid), *(["-f", pattern] if pattern else [])], capture_output=True, text=True)
        return [int(p) for p in done.stdout.split()]

    def kill(self) -> None:
        """The node dies at once: its raylet, its object store and every worker on it (kill -9)."""
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=60)
        shutil.rmtree(self.temp, ignore_errors=True)
