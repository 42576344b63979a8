"""The benchmark table's latency: measured per point on a device (`nas bench latency`), written into the table
with the device, and replayed as an objective (`nas bench run --objectives top1,latency`). No timing is
asserted: the figures here are made up, or measured only to be written and read."""

import gzip
import json
import random

import pytest

from nas.bench import Table, latency_agreement, measure_table_latency
from searchspace import NasError
from searchspace.latency import Device, Protocol
from test_bench import nas, synthetic_table

# A measurement that takes a moment: small images, few runs (its figures are written and read, never judged)
QUICK = Protocol(img_size=32, throughput_batch=0, threads=1, min_runs=3, min_seconds=0.01)


def with_fake_latency(table: Table, seed: int = 0) -> Table:
    """The table with made-up latencies (MACs and noise: so they do not rank as MACs do) and a device block."""
    rng = random.Random(seed)
    for p in table.points:
        ms = p.macs / 1e8 * rng.uniform(0.3, 3.0) + 1.0
        p.latency = {"ms": round(ms, 4), "iqr_ms": round(ms * 0.03, 4), "runs": 15, "load_average": [0.5, 0.4, 0.3]}
    table.latency = {
        "device": {**Device.here(Protocol(throughput_batch=0)).to_dict(), "load_average": [0.5, 0.4, 0.3]}, "protocol": Protocol(throughput_batch=0).to_dict(),
        "runs": [{"date": "2026-01-01T00:00:00+00:00", "points": len(table.points), "seconds": 1.0,
                  "load_average_start": [0.5, 0.4, 0.3], "load_average_end": [0.5, 0.4, 0.3]}],
    }
    return table


def test_a_tables_latency_and_device_round_trip_through_its_file(tmp_path):
    table = with_fake_latency(synthetic_table(n=8))
    table.save(tmp_path / "t.json.gz")
    loaded = Table.load(tmp_path / "t.json.gz")
    assert loaded == table
    assert [p.latency for p in loaded.points] == [p.latency for p in table.points] and loaded.latency == table.latency
    assert Device.from_dict(loaded.latency["device"]).same_as(Device.from_dict(table.latency["device"]))
    loaded.save(tmp_path / "again.json.gz")
    assert (tmp_path / "again.json.gz").read_bytes() == (tmp_path / "t.json.gz").read_bytes()


def test_an_old_table_without_latency_still_reads_and_is_written_as_before(tmp_path):
    table = synthetic_table(n=8)
    table.save(tmp_path / "old.json.gz")
    document = json.loads(gzip.decompress((tmp_path / "old.json.gz").read_bytes()))
    assert "latency" not in document and all("latency" not in p for p in document["points"])  # the old format, exactly
    loaded = Table.load(tmp_path / "old.json.gz")
    assert loaded.latency is None and all(p.latency is None for p in loaded.points)
    assert loaded.hypervolume(loaded.points) == table.hypervolume(table.points)


def test_macs_and_a_predictor_are_compared_with_the_measured_latency():
    table = with_fake_latency(synthetic_table(n=12))
    figures = latency_agreement(table)
    assert figures["measured"] == 12 and -1 <= figures["macs_tau"] <= 1
    assert figures["ms"][0] <= figures["ms"][1] <= figures["ms"][2]


def test_an_interrupted_measurement_keeps_its_points_and_a_rerun_measures_only_the_rest(tmp_path):
    synthetic_table(n=3).save(tmp_path / "t.json.gz")
    seen = []

    def stop_after_first(done, total, point, latency):
        seen.append((done, total, point and point.id))
        if point is not None:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        measure_table_latency(tmp_path / "t.json.gz", QUICK, progress=stop_after_first, say=lambda line: None)
    kept = Table.load(tmp_path / "t.json.gz")
    assert [p.latency is not None for p in kept.points] == [True, False, False] and kept.latency["runs"][0]["points"] == 1
    first = kept.points[0].latency

    rest = []
    table = measure_table_latency(tmp_path / "t.json.gz", QUICK, progress=lambda *a: rest.append(a[0]), say=lambda line: None)
    assert rest == [1, 2, 3] and table.points[0].latency == first  # the measured point is kept as it was
    assert all(p.latency["ms"] > 0 and p.latency["iqr_ms"] >= 0 for p in table.points)
    assert [r["points"] for r in table.latency["runs"]] == [1, 2] and Table.load(tmp_path / "t.json.gz") == table

    again = []  # nothing left to measure
    measure_table_latency(tmp_path / "t.json.gz", QUICK, progress=lambda *a: again.append(a), say=lambda line: None)
    assert again == []
    with pytest.raises(NasError, match="another device or protocol.*--fresh"):
        measure_table_latency(tmp_path / "t.json.gz", Protocol(img_size=48, throughput_batch=0, threads=1, min_runs=3), say=lambda line: None)
    fresh = []
    measure_table_latency(tmp_path / "t.json.gz", QUICK, fresh=True, progress=lambda *a: fresh.append(a[0]), say=lambda line: None)
    assert fresh == [0, 1, 2, 3]


def test_a_rebuilt_table_takes_the_latency_its_earlier_build_measured_and_measures_only_new_points(tmp_path):
    """A table rebuilt with another recipe holds the same full-size networks: their latency on this device by this
    protocol is taken from the earlier table, points it lacks are measured, and another protocol's is refused."""
    synthetic_table(n=3).save(tmp_path / "old.json.gz")
    old = measure_table_latency(tmp_path / "old.json.gz", QUICK, say=lambda line: None)
    rebuilt = synthetic_table(n=4)  # the same first 3 points, and one more
    assert [p.id for p in rebuilt.points[:3]] == [p.id for p in old.points]
    rebuilt.save(tmp_path / "new.json.gz")
    measured = []
    table = measure_table_latency(tmp_path / "new.json.gz", QUICK, measured_in=tmp_path / "old.json.gz",
                                  progress=lambda *a: measured.append(a[2] and a[2].id), say=lambda line: None)
    assert [p.latency for p in table.points[:3]] == [p.latency for p in old.points]
    assert measured == [None, rebuilt.points[3].id] and table.points[3].latency["ms"] > 0  # only the new point measured
    taken = [r for r in table.latency["runs"] if r.get("taken")]
    assert taken[0]["taken"] == 3 and "old.json.gz" in taken[0]["taken_from"]
    assert any(r.get("in") == str(tmp_path / "old.json.gz") for r in table.latency["runs"])  # when those were measured
    synthetic_table(n=4).save(tmp_path / "other.json.gz")
    with pytest.raises(NasError, match="another device or protocol"):
        measure_table_latency(tmp_path / "other.json.gz", Protocol(img_size=48, throughput_batch=0, threads=1, min_runs=3),
                              measured_in=tmp_path / "old.json.gz", say=lambda line: None)


def test_nas_bench_latency_writes_the_table_with_its_device_and_prints_macs_against_latency(tmp_path):
    synthetic_table(n=3).save(tmp_path / "t.json.gz")
    run = nas("bench", "latency", "--table", "t.json.gz", "-o", "measured.json.gz", "--img-size", "32", "--threads", "1",
              "--min-runs", "3", "--json", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    figures = json.loads(run.stdout)
    assert figures["measured"] == 3 and figures["device"]["threads"] == 1 and figures["protocol"]["img_size"] == 32
    assert Table.load(tmp_path / "t.json.gz").latency is None  # --output: the table itself is left as it was
    measured = Table.load(tmp_path / "measured.json.gz")
    assert measured.latency["device"]["cpu"] and all(p.latency for p in measured.points)


def test_a_latency_objective_on_a_table_without_latency_is_refused_naming_nas_bench_latency(tmp_path):
    from nas.replay import replay

    table = synthetic_table(n=8)
    with pytest.raises(NasError, match="no latency.*nas bench latency"):
        replay(table, "random", "none", objectives=("top1", "latency"))
    with pytest.raises(NasError, match="top1 and then"):
        replay(table, "random", "none", objectives=("macs", "top1"))
    table.save(tmp_path / "t.json.gz")
    run = nas("bench", "run", "--table", "t.json.gz", "--objectives", "top1,latency", "--seeds", "1", cwd=tmp_path)
    assert run.returncode == 2 and "nas bench latency" in run.stderr and "Traceback" not in run.stderr


def test_a_table_with_latency_replays_a_search_on_top1_and_latency_as_a_search_on_them_would_run():
    from nas.replay import replay
    from trials import record

    table = with_fake_latency(synthetic_table())
    run = replay(table, "tpe", "pareto", seed=1, budget_seconds=60, objectives=("top1", "latency"))
    assert [d.name for d in run.study.directions] == ["MAXIMIZE", "MINIMIZE"]
    complete = [t for t in run.study.trials if t.state.name == "COMPLETE"]
    assert complete
    for t in complete:  # the sampler was told each point's top-1 and the latency the table measured for it
        point = table.point(t.user_attrs[record.SPEC_ID])
        assert t.values == [point.top1, point.latency_ms] and t.user_attrs[record.LATENCY_MS] == point.latency_ms
    assert run.hypervolume == pytest.approx(table.hypervolume([table.point(i) for _, i in run.completed], ("top1", "latency")))
    again = replay(table, "tpe", "pareto", seed=1, budget_seconds=60, objectives=("top1", "latency"))
    assert again.log == run.log and again.trace == run.trace  # the same seed, the same search

    macs_only = replay(table, "tpe", "pareto", seed=1, budget_seconds=60)  # another search: other decisions
    assert [t.values[1] for t in macs_only.study.trials if t.state.name == "COMPLETE"][0] > 1e6  # told MACs
    scored = macs_only.trace_in(table, ("top1", "latency"))  # scored in top-1 and latency all the same
    assert scored[-1][1] == pytest.approx(table.hypervolume([table.point(i) for _, i in macs_only.completed], ("top1", "latency")))
    assert [t for t, _ in scored[1:]] == [t for t, _ in macs_only.completed]


def test_mo_asha_ranks_a_latency_search_on_latency():
    from nas.replay import _results
    from nas.scheduler import evaluation_points, make_scheduler
    from trials import record

    table = with_fake_latency(synthetic_table(n=4))
    results = _results(table.points[0], evaluation_points("pareto", 2))
    assert all(r[record.LATENCY_MS] == table.points[0].latency_ms for _, r in results)
    scheduler = make_scheduler("pareto", 2, objectives=(record.PROXY_TOP1, record.LATENCY_MS))
    assert "latency_ms" in scheduler.debug_string()


def test_nas_bench_run_replays_on_latency_and_prints_the_reference_point_in_ms(tmp_path):
    with_fake_latency(synthetic_table()).save(tmp_path / "t.json.gz")
    run = nas("bench", "run", "--table", "t.json.gz", "--objectives", "top1,latency", "--seeds", "2", "--budget-seconds", "40",
              "--sampler", "random", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "hypervolume in (top1, latency)" in run.stdout and " ms" in run.stdout.split("reference point")[1]
    as_json = json.loads(nas("bench", "run", "--table", "t.json.gz", "--objectives", "top1,latency", "--seeds", "1",
                             "--budget-seconds", "40", "--json", cwd=tmp_path).stdout)
    assert as_json["objectives"] == ["top1", "latency"] and set(as_json["reference_point"]) == {"proxy_top1", "latency_ms", "normalised"}


def test_a_replay_has_the_goals_of_the_search_it_replays():
    import optuna

    from nas.bench import directions
    from nas.replay import TableSearcher
    from nas.search import SearchOptions

    table = with_fake_latency(synthetic_table(n=4))

    def goals(objectives):
        study = optuna.create_study(directions=list(directions(objectives)))
        return TableSearcher(table, study, table.load_space(), None, 0, objectives).goals

    assert goals(("top1", "macs")) == SearchOptions(budget=table.budget).goals
    assert goals(("top1", "macs", "latency")) == SearchOptions(budget=table.budget, latency=True).goals  # nas search --latency
    only = goals(("top1", "latency"))  # the same budget, latency in place of MACs as the second objective
    assert only.constraints == SearchOptions(budget=table.budget).goals.constraints and only.directions == ["maximize", "minimize"]
