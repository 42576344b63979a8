"""A study's objectives and constraints (trials.goals): recorded once, read by everything after, and kept by a
resumed study, with the device its latencies come from."""

import optuna
import pytest

from nas.study import open_search_study, open_storage
from searchspace import NasError, load_space, parse_macs
from trials import ProxyRecipe
from trials import record
from trials.goals import Goals

from latencylib import DEVICE


def open_study(url, goals, latency=None, name="s"):
    return open_search_study(open_storage(url), name, load_space("tiny"), parse_macs("4.5G"), "fashion-mnist", ProxyRecipe(), "search", goals, latency)


def test_a_study_records_its_objectives_and_constraints_and_a_resumed_one_keeps_them(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    goals = Goals.of(parse_macs("4.5G"), min_macs=parse_macs("30M"), latency=True, max_latency_ms=40)
    latency = {"source": "table", "table": "lat.json", "predictor": "lut", "device": DEVICE, "protocol": {}}
    study, resumed = open_study(url, goals, latency)
    assert not resumed and Goals.of_study(study) == goals and study.user_attrs[record.STUDY_LATENCY] == latency
    assert study.directions == [optuna.study.StudyDirection.MAXIMIZE] + [optuna.study.StudyDirection.MINIMIZE] * 2
    assert study.metric_names == ["proxy top-1 (%)", "MACs", "latency (ms)"]
    assert goals.describe() == "maximise proxy top-1 (%), minimise MACs, minimise latency (ms); MACs 30.0M-4.50G, latency <= 40 ms"
    assert open_study(url, goals, latency)[1]  # the same goals and device: resumed
    with pytest.raises(NasError, match="was run to maximise proxy top-1 .*latency <= 40 ms, not to .*latency <= 30 ms"):
        open_study(url, Goals.of(parse_macs("4.5G"), min_macs=parse_macs("30M"), latency=True, max_latency_ms=30))
    with pytest.raises(NasError, match="holds latencies of another device \\(cpu 'Test CPU', not 'Other CPU'\\)"):
        open_study(url, goals, {**latency, "device": {**DEVICE, "cpu": "Other CPU"}})


def test_a_study_made_before_goals_were_recorded_has_top1_and_macs_within_its_budget(tmp_path):
    study = optuna.create_study(directions=list(record.DIRECTIONS))
    study.set_user_attr(record.STUDY_BUDGET, parse_macs("4.5G"))
    assert Goals.of_study(study) == Goals.of(parse_macs("4.5G"))
    assert Goals.of_study(study).directions == list(record.DIRECTIONS) and Goals.of_study(study).labels == list(record.OBJECTIVES)


def test_a_constraint_is_the_violation_relative_to_its_bound_so_macs_and_milliseconds_weigh_alike():
    goals = Goals.of(parse_macs("4G"), min_macs=parse_macs("2G"), max_latency_ms=40)
    values = goals.constraint_values({record.MACS: parse_macs("5G"), record.LATENCY_MS: 50.0})
    assert values == {record.BUDGET_CONSTRAINT: 0.25, record.MIN_MACS_CONSTRAINT: -1.5, record.LATENCY_CONSTRAINT: 0.25}
    assert goals.broken({record.MACS: parse_macs("1G")}).name == record.MIN_MACS_CONSTRAINT
    assert goals.constraint_values({record.MACS: parse_macs("5G")})[record.LATENCY_CONSTRAINT] == 0.0  # not measured
    assert goals.broken({record.MACS: parse_macs("3G"), record.LATENCY_MS: 39.0}) is None


def test_latency_measured_here_follows_the_searchs_protocol_options_and_the_study_records_them():
    from nas.latency_source import latency_source

    source = latency_source(None, clock="cpu")  # one thread's CPU time: the thread count follows
    assert source.measures_here and source.protocol.threads == 1 and source.protocol.clock == "cpu"
    assert source.record()["device"]["threads"] == 1 and source.record()["protocol"]["throughput_batch"] == 0
