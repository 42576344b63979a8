"""`nas arch` and `nas space` as a user and a script see them."""

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from nas.cli import main
from searchspace import count, parse_macs, preset_names


def run(*args):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result


def nas(*args):
    return subprocess.run([sys.executable, "-m", "nas.cli", *args], capture_output=True, text=True)


def test_arch_list_json_has_every_preset_within_tolerance():
    rows = json.loads(run("arch", "list", "--json").output)
    assert [r["name"] for r in rows] == preset_names()
    assert all(r["within_tolerance"] for r in rows)
    swin = next(r for r in rows if r["name"] == "swin_t")
    assert swin["params"] == 28_288_354 and swin["macs"] == 4_490_566_656


def test_arch_list_table_reads_for_people():
    text = run("arch", "list").output
    assert "swin_t" in text and "28.29M" in text and "4.49G" in text and "tolerance" in text


def test_arch_list_counts_once_then_answers_without_loading_torch_until_searchspace_changes(tmp_path):
    env = {**os.environ, "NAS_CACHE_DIR": str(tmp_path / "cache")}
    listing = (
        "import sys; from click.testing import CliRunner; from nas.cli import main\n"
        "print(CliRunner().invoke(main, ['arch', 'list', '--json'], catch_exceptions=False).output)\n"
        "print('torch' in sys.modules)"
    )

    def arch_list():
        done = subprocess.run([sys.executable, "-c", listing], capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr
        rows, torch_loaded = done.stdout.rsplit("\n", 2)[:2]
        return json.loads(rows), torch_loaded == "True"

    counted, torch_loaded = arch_list()
    assert torch_loaded and [r["name"] for r in counted] == preset_names()
    assert arch_list() == (counted, False)  # the figures counted the first time
    saved = tmp_path / "cache" / "presets.json"
    kept = json.loads(saved.read_text())
    saved.write_text(json.dumps({"key": "other code", "value": {n: ["x", 1, 1] for n in kept["value"]}}))
    assert arch_list() == (counted, True)  # counted again: searchspace's code or presets changed


def test_arch_show_json_gives_name_id_params_macs_spec_and_parts():
    data = json.loads(run("arch", "show", "u_pvt_micro", "--json").output)
    assert {"name", "id", "params", "macs", "spec"} <= set(data)
    assert data["macs"] == count("u_pvt_micro").macs == sum(p["macs"] for p in data["parts"])
    assert [p["part"] for p in data["parts"]] == ["stem", "stage 1", "stage 2", "stage 3", "stage 4", "head"]


def test_arch_show_reads_a_spec_file_at_another_size(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(json.dumps(json.loads(run("arch", "show", "swin_t", "--json").output)["spec"]))
    data = json.loads(run("arch", "show", str(path), "--img-size", "112", "--num-classes", "10", "--json").output)
    assert data["macs"] == count(str(path), img_size=112, num_classes=10).macs


def test_space_show_lists_dimensions_cardinality_and_presets_inside():
    data = json.loads(run("space", "show", "--json").output)
    assert data["cardinality"] > 10**20 and "swin_t" in data["presets_inside"]
    assert "mixer.connectivity" in data["dimensions"]
    assert "u_pvt_micro" in data["presets_outside"]


def test_space_sample_within_budget_is_reproducible():
    first = json.loads(run("space", "sample", "-n", "4", "--seed", "3", "--budget", "2G", "--json").output)
    again = json.loads(run("space", "sample", "-n", "4", "--seed", "3", "--budget", "2G", "--json").output)
    assert [p["id"] for p in first] == [p["id"] for p in again]
    assert len(first) == 4 and all(p["macs"] <= parse_macs("2G") for p in first)


@pytest.mark.parametrize(
    "args, message",
    [
        (["space", "sample", "--budget", "4.5X"], "budget '4.5X' is not a number of MACs"),
        (["space", "sample", "--budget", "1M"], "the cheapest needs 0.12G"),
        (["arch", "show", "no_such_net"], "neither a preset"),
        (["space", "show", "missing.yaml"], "no such space file"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(args, message):
    result = nas(*args)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and message in result.stderr and "Traceback" not in result.stderr


def test_debug_flag_shows_the_traceback():
    result = nas("--debug", "space", "sample", "--budget", "abc")
    assert result.returncode != 0 and "Traceback" in result.stderr and "NasError" in result.stderr


def test_every_command_has_help():
    for args in (["--help"], ["arch", "--help"], ["arch", "list", "--help"], ["arch", "show", "--help"], ["arch", "export", "--help"], ["space", "show", "--help"], ["space", "sample", "--help"]):
        result = run(*args)
        assert result.exit_code == 0 and "Usage:" in result.output


def test_proxy_base_gpu_starts_the_recipe_from_the_gpu_recipe_and_given_options_override_it():
    import click

    from nas.cli import recipe_from, recipe_options
    from trials.recipe import GPU_RECIPE, ProxyRecipe

    @click.command()
    @recipe_options("proxy", ProxyRecipe())
    def show(**recipe):
        click.echo(json.dumps(recipe_from(recipe, "proxy", 0).as_dict()))

    def recipe(*args):
        result = CliRunner().invoke(show, list(args))
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    assert recipe() == ProxyRecipe().as_dict()
    gpu = recipe("--proxy-base", "gpu")
    assert gpu == GPU_RECIPE.as_dict() and gpu["resolution"] == 112 and gpu["stem_stride"] == 4  # maps 28/14/7/4
    assert recipe("--proxy-base", "gpu", "--subset", "5000", "--proxy-epochs", "3") == {**gpu, "subset": 5000, "epochs": 3}
