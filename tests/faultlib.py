"""Helpers of the process-level tests and the fault suite: run `nas` as users do, wait for its ports,
kill it, start a PostgreSQL server, and check that a study survived (no finished trial lost, no
point trained twice, no corrupt rows). Used by tests/test_faults.py (and through it by
benchmarks/faults.py), test_dashboard.py, test_search.py and test_bad_input.py.
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
import time
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent
FAST = ["--space", "tiny", "--subset", "256", "--proxy-epochs", "2", "--seed", "0", "--scheduler", "none"]
STUDY = "tiny-4.5G-fashion-mnist"


def env(heartbeat: int = 2) -> dict:
    return {**os.environ, "NAS_HEARTBEAT_SECONDS": str(heartbeat)}


def nas(*args, cwd, timeout=900, heartbeat=2):
    return subprocess.run([str(BIN / "nas"), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env(heartbeat))


def start_nas(*args, cwd, heartbeat=2) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "nas"), *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=env(heartbeat), start_new_session=True,
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

    from trials import record as R

    try:
        study = optuna.load_study(study_name=name, storage=storage_url)
    except KeyError:
        return Snapshot()
    snap = Snapshot()
    for t in study.get_trials(deepcopy=False):
        snap.states[t.state.name] = snap.states.get(t.state.name, 0) + 1
        if t.state.name == "COMPLETE":
            snap.complete[t.number] = (tuple(t.values), t.user_attrs.get(R.SPEC_ID))
        trained = t.user_attrs.get(R.EPOCHS) and R.DUPLICATE_OF not in t.user_attrs
        if trained and t.state.name in ("COMPLETE", "PRUNED"):
            snap.trained_ids.append(t.user_attrs[R.SPEC_ID])
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
    def __init__(self, root: Path):
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            raise RuntimeError("Debian's postgresql is not installed (apt-get install postgresql)")
        self.bin = Path(found[-1]).parent
        self.root, self.port = root, free_port()
        self.data = root / "pgdata"
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
        done = self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "nas", "--auth=trust", "-E", "UTF8")
        if done.returncode:
            raise RuntimeError(f"initdb failed: {done.stderr[-500:]}")
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        done = self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "start")
        if done.returncode:
            raise RuntimeError(f"pg_ctl start failed: {done.stderr[-500:]}")
        done = self._run(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "nas", "nas")
        if done.returncode:
            raise RuntimeError(f"createdb failed: {done.stderr[-500:]}")
        # the password is ignored by trust auth; it is there to prove it never reaches any output
        return f"postgresql+psycopg2://nas:pg-secret-pw@127.0.0.1:{self.port}/nas"

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
