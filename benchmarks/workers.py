"""Concurrent searches on one PostgreSQL study: 1, 2, 4 and 8 `nas search` workers at once, with tiny trials
so two cores suffice, each connected to the database directly, and with --grpc also through Optuna's gRPC
storage proxy (`nas storage-proxy`).

The workers share one Ray cluster (a head started with `ray start`, a CPU slot per worker), as searches on
the machines of a lab share theirs. Printed per run: trials per minute of the study (its trials' finish
times, so the workers' start-up is left out; and over the whole wall time), and what must be zero: points
trained twice, results a worker reported that the study lacks, and storage errors (a worker that failed, or
said so). Every worker runs the same command (the same seed): draws two workers make at the same moment
are stepped back from, not trained twice (counted as collided).

    python benchmarks/workers.py [--folder /tmp/nas-scale] [--workers 1,2,4,8] [--trials-per-worker 6] [--grpc]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from faultlib import BIN, Postgres, RayNode, duplicates, free_port, snapshot, wait_for_port  # noqa: E402

STUDY = "workers"
TINY = ["--budget", "4.5G", "--space", "tiny", "--subset", "64", "--proxy-epochs", "2", "--scheduler", "none"]
STORAGE_ERROR = re.compile(r"study storage .* failed|OperationalError|IntegrityError|StatusCode\.", re.IGNORECASE)


def run(workers: int, trials: int, storage: str, ray_address: str, env: dict, folder: Path, database: str) -> dict:
    """`workers` searches of `trials` trials each on one new study; the study's verdict on them."""
    import optuna

    start = time.perf_counter()
    searches = [
        subprocess.Popen(
            [str(BIN / "nas"), "search", *TINY, "--trials", str(trials), "--max-concurrent", "1",
             "--address", ray_address, "--storage", storage, "--study", STUDY, "--json"],
            cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(workers)  # the same command on every worker, as on the machines of a lab
    ]
    outputs = [s.communicate(timeout=3600) for s in searches]
    wall = time.perf_counter() - start
    reported, collided, errors = 0, 0, 0
    for search, (stdout, stderr) in zip(searches, outputs, strict=True):
        if search.returncode or STORAGE_ERROR.search(stderr):
            errors += 1
            print(f"  a worker failed ({search.returncode}): {stderr.strip().splitlines()[-1] if stderr.strip() else ''}", flush=True)
            continue
        this_run = json.loads(stdout)["this_run"]
        reported += this_run["complete"]
        collided += this_run["draws_collided"]
    study = optuna.load_study(study_name=STUDY, storage=database)
    done = sorted(t.datetime_complete for t in study.trials if t.state.name == "COMPLETE")
    span = (done[-1] - done[0]).total_seconds() if len(done) > 1 else float("nan")
    return {
        "workers": workers, "complete": len(done), "reported": reported, "lost": reported - len(done),
        "duplicates": duplicates(snapshot(database, STUDY)), "storage_errors": errors, "collided": collided,
        "per_minute": (len(done) - 1) / span * 60 if len(done) > 1 else float("nan"), "per_minute_wall": len(done) / wall * 60,
        "wall": wall,
    }


def proxy(database: str, env: dict) -> tuple[subprocess.Popen, str]:
    port = free_port()
    server = subprocess.Popen([str(BIN / "nas"), "storage-proxy", "--storage", database, "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not wait_for_port(port, server, timeout=300):
        raise SystemExit("the storage proxy did not start")
    return server, f"grpc://127.0.0.1:{port}"


def run_workers(folder: Path, counts: list[int], trials: int, grpc: bool) -> None:
    print(f"concurrent searches on one PostgreSQL study; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    server = Postgres(folder / "pg")
    url = server.start()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "RAY_USAGE_STATS_ENABLED": "0", "NAS_CACHE_DIR": tempfile.mkdtemp(prefix="cache-", dir=folder)}
    if "RAY_AUTH_MODE" not in env:  # a token of this run's own for the cluster and its drivers
        token = Path(tempfile.mkdtemp(prefix="ray-token-", dir=folder)) / "token"
        token.write_text(os.urandom(32).hex())
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
    head = RayNode(env, cpus=max(counts))
    rows = []
    try:
        head.wait_ready()
        for via in ["direct"] + (["grpc"] if grpc else []):
            for n in counts:
                database = url.rsplit("/", 1)[0] + f"/{via}_{n}_{int(time.time())}"
                server.create_database(database.rsplit("/", 1)[1])
                proxy_server, storage = proxy(database, env) if via == "grpc" else (None, database)
                try:
                    row = run(n, trials, storage, head.address, env, folder, database)
                finally:
                    if proxy_server is not None:
                        proxy_server.terminate()
                        proxy_server.wait(timeout=60)
                rows.append({"via": via, **row})
                print(f"  {via}, {n} workers: {row['complete']} trials, {row['per_minute']:.1f}/min", flush=True)
    finally:
        head.kill()
        if server.started:
            server.stop()
    print(f"\nload average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the end (a shared machine)")
    print("| storage | workers | trials | trials/min (between finishes) | trials/min (wall) | draws collided | duplicates | lost | storage errors |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {'gRPC proxy' if r['via'] == 'grpc' else 'PostgreSQL'} | {r['workers']} | {r['complete']} | {r['per_minute']:.1f} | "
              f"{r['per_minute_wall']:.1f} | {r['collided']} | {r['duplicates']} | {r['lost']} | {r['storage_errors']} |")
    bad = [r for r in rows if r["duplicates"] or r["lost"] or r["storage_errors"]]
    print("\ngoal 0 duplicates, 0 lost results, 0 storage errors: " + ("met" if not bad else f"MISSED in {len(bad)} runs"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", default=os.path.join(tempfile.gettempdir(), "nas-scale"))
    parser.add_argument("--workers", default="1,2,4,8")
    parser.add_argument("--trials-per-worker", type=int, default=6)
    parser.add_argument("--grpc", action="store_true", help="also through Optuna's gRPC storage proxy (needs grpcio)")
    args = parser.parse_args()
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    run_workers(folder, [int(n) for n in args.workers.split(",")], args.trials_per_worker, args.grpc)


if __name__ == "__main__":
    main()
