"""One way to say each thing: every command that trains takes the same Ray options and hands all of them on; every
command that names a study calls the option --study (and --study-name, the same option)."""

import json

import pytest
from click.testing import CliRunner

import nas.bench
import nas.calibrate
import nas.search
from nas.cli import main
from nas.search import RayOptions

RAY = ["--address", "127.0.0.1:6379", "--cpus-per-trial", "2", "--gpus-per-trial", "0.5", "--max-concurrent", "3",
       "--max-memory-per-trial", "2G"]
TRAINING = {  # command -> (its arguments, the function that receives its options)
    "search": (["search", "--budget", "4.5G"], (nas.search, "run_search")),
    "calibrate": (["calibrate"], (nas.calibrate, "calibrate")),
    "confirm": (["confirm"], (nas.calibrate, "confirm")),
    "bench build": (["bench", "build"], (nas.bench, "build_table")),
}


class Handed(Exception):
    def __init__(self, opts):
        self.opts = opts


def hand_over(opts, *args, **kwargs):
    raise Handed(opts)


@pytest.mark.parametrize("command", sorted(TRAINING))
def test_every_command_that_trains_hands_on_every_ray_option(command, monkeypatch):
    args, (module, function) = TRAINING[command]
    monkeypatch.setattr(module, function, hand_over)
    result = CliRunner().invoke(main, [*args, *RAY])
    assert isinstance(result.exception, Handed), result.output
    assert result.exception.opts.ray == RayOptions("127.0.0.1:6379", 2.0, 0.5, 3, 2 * 1024**3)


@pytest.mark.parametrize("command", [["search"], ["bench", "build"], ["pareto"], ["export"], ["report"], ["confirm"]])
def test_every_command_that_names_a_study_takes_study_and_study_name_as_one_option(command):
    text = CliRunner().invoke(main, [*command, "--help"]).output
    assert "--study, --study-name" in text, text


def test_pareto_reads_the_study_named_by_either_name(results_study):
    url, study = results_study
    for option in ("--study", "--study-name"):
        result = CliRunner().invoke(main, ["pareto", option, study.study_name, "--storage", url, "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["study"] == study.study_name
