"""Studies of many trials: a command reads from the database only what changed since the last one (the
trial cache), a resumed search reads only what changed between suggestions, the front and the dashboard's
additions cost no copy or query per trial, and the commands that read studies never load torch."""

import json
import random
import shutil
import subprocess
import sys

import optuna
import pytest
from click.testing import CliRunner
from optuna.trial import TrialState

from dashboards import front_trials
from nas.cli import main
from nas.searcher import StudySearcher
from nas.study import open_search_study, open_storage
from searchspace import ArchSpec, count, load_space, parse_macs
from trials import ProxyRecipe
from trials import record

BUDGET = parse_macs("4.5G")
# thousands of points with a handful of parameters each: hundreds of distinct trials, written fast
MEDIUM_SPACE = """
name: medium
stages: 4
stage:
  depth: [{low: 1, high: 2}, {low: 1, high: 2}, {low: 1, high: 3}, {low: 1, high: 2}]
  dim: [[16, 32], [32, 48], [64, 96], [64, 128]]
  ffn_ratio: [2.0, 3.0]
mixer:
  connectivity: [window, sliding]
  dynamic: [static, attention]
  kernel: {by_connectivity: {window: [4], sliding: [3]}}
  head_dim: {by_dynamic: {static: [1], attention: [8]}}
  shift: [false]
  rel_pos: [true]
same_for_all_stages: [mixer.connectivity]
"""


def stored_trials(study, space, n, seed=0):
    """`n` finished trials of distinct points on `study`, recorded as the searcher records them (fast: one
    write per trial): every tenth FAIL, every seventh COMPLETE one over a tight budget."""
    recipe, rng = ProxyRecipe(), random.Random(seed)
    scratch = optuna.create_study()
    points = {}
    while len(points) < n:
        spec = space.sample(rng)
        points.setdefault(recipe.proxy_id(spec), spec)
    templates = []
    for i, spec in enumerate(points.values()):
        scratch.enqueue_trial(space.params_of(spec))
        drawn = scratch.ask()
        space.suggest(drawn)
        frozen = drawn  # its parameters and distributions
        params, macs = count(spec)
        attrs = {record.SPEC_ID: spec.id, record.PROXY_ID: recipe.proxy_id(spec), record.SPEC: json.dumps(spec.to_dict(), sort_keys=True),
                 record.PARAMS: params, record.MACS: macs, record.EPOCHS: recipe.epochs}
        if i % 10 == 9:
            templates.append(optuna.trial.create_trial(state=TrialState.FAIL, params=frozen.params, distributions=frozen.distributions,
                                                       user_attrs={**attrs, record.FAIL_REASON: "diverged"}))
            continue
        top1 = rng.choice([50.0, 60.0, 70.0, 80.0])  # ties: several trials share a point of the front
        templates.append(optuna.trial.create_trial(
            values=[top1, macs], params=frozen.params, distributions=frozen.distributions, user_attrs={**attrs, record.PROXY_TOP1: top1},
            constraints={record.BUDGET_CONSTRAINT: macs - (BUDGET if i % 7 else 10**6)},  # every 7th over a tight budget
        ))
    study.add_trials(templates)


@pytest.fixture
def space(tmp_path):
    (tmp_path / "medium.yaml").write_text(MEDIUM_SPACE)
    return load_space(str(tmp_path / "medium.yaml"))


@pytest.fixture(scope="module")
def large_file(tmp_path_factory):
    """A search study of 300 recorded trials in a SQLite file, made once for this module."""
    folder = tmp_path_factory.mktemp("large")
    (folder / "medium.yaml").write_text(MEDIUM_SPACE)
    space = load_space(str(folder / "medium.yaml"))
    study, _ = open_search_study(open_storage(f"sqlite:///{folder}/large.db"), "large", space, BUDGET, "fashion-mnist", ProxyRecipe())
    stored_trials(study, space, 300)
    return folder / "large.db"


@pytest.fixture
def large(large_file, tmp_path):
    """A copy of that study, in this test's own folder."""
    shutil.copy(large_file, tmp_path / "large.db")
    return f"sqlite:///{tmp_path}/large.db"


def reads(storage) -> list[int]:
    """Spy on the database: the number of trials each read of the storage fetched."""
    fetched, read = [], storage._backend._get_trials

    def counting(*args, **kwargs):
        trials = read(*args, **kwargs)
        fetched.append(len(trials))
        return trials

    storage._backend._get_trials = counting
    return fetched


def test_a_second_command_reads_from_the_database_only_the_trials_added_since_the_first(large, space):
    first = optuna.load_study(study_name="large", storage=open_storage(large))
    assert len(first.get_trials(deepcopy=False)) == 300  # the first command reads every trial, and keeps them
    stored_trials(first, space, 3, seed=1)

    storage = open_storage(large)
    fetched = reads(storage)
    again = optuna.load_study(study_name="large", storage=storage)
    trials = again.get_trials(deepcopy=False)
    assert fetched == [3] and len(trials) == 303
    assert [t.params for t in trials] == [t.params for t in optuna.load_study(study_name="large", storage=large).trials]


def test_a_trial_cache_never_answers_for_another_database_in_the_same_file(large, space, tmp_path):
    optuna.load_study(study_name="large", storage=open_storage(large)).get_trials(deepcopy=False)
    (tmp_path / "large.db").unlink()  # a new database where the old one was: same path, same study name and id
    study, _ = open_search_study(open_storage(large), "large", space, BUDGET, "fashion-mnist", ProxyRecipe())
    stored_trials(study, space, 300, seed=2)

    storage = open_storage(large)
    fetched = reads(storage)
    trials = optuna.load_study(study_name="large", storage=storage).get_trials(deepcopy=False)
    assert fetched == [300]  # read whole: the cached trials belonged to the old database
    assert [t.params for t in trials] == [t.params for t in optuna.load_study(study_name="large", storage=large).trials]


def test_a_resumed_search_reads_only_what_changed_and_its_sampler_models_the_front_and_the_latest_trials(large, space, monkeypatch):
    import nas.drafts

    monkeypatch.setattr(nas.drafts, "WINDOW", 100)
    optuna.load_study(study_name="large", storage=open_storage(large)).get_trials(deepcopy=False)  # an earlier command
    storage = open_storage(large)
    fetched = reads(storage)
    study, resumed = open_search_study(storage, "large", space, BUDGET, "fashion-mnist", ProxyRecipe())
    searcher = StudySearcher(study, space, BUDGET, ProxyRecipe(), 5, [], optuna.samplers.TPESampler(seed=0))
    stored = study.get_trials(deepcopy=False)
    modelled = {t.number: t for t in front_trials(study)} | {t.number: t for t in stored[-100:] if t.state == TrialState.COMPLETE}
    points = lambda trials: sorted(sorted(t.params.items()) for t in trials)  # noqa: E731
    assert points(searcher.drafts.study.get_trials(deepcopy=False)) == points(modelled.values())
    trained = {t.user_attrs[record.PROXY_ID] for t in stored if t.state == TrialState.COMPLETE}
    for i in range(5):
        config = searcher.suggest(f"t{i}")
        searcher.on_trial_complete(f"t{i}", {"epoch": 2, "proxy_top1": 55.0})
        assert ProxyRecipe().proxy_id(ArchSpec.model_validate(config["spec"])) not in trained  # the index came from the cache
    assert resumed and sum(fetched) <= 2 * len(fetched)  # each read: the trial this search runs, and the one it told


@pytest.mark.parametrize("constrained", [True, False])
def test_the_front_is_optunas_own_best_trials_with_ties_and_infeasible_trials(constrained):
    study = optuna.create_study(directions=list(record.DIRECTIONS))
    for top1, macs, over in [(70, 2e9, 0), (70, 2e9, 0), (65, 1e9, 5e8), (60, 1e9, 0), (80, 3e9, 0), (75, 3e9, 0), (85, 4e9, 0)]:
        constraints = {record.BUDGET_CONSTRAINT: over} if constrained else None
        study.add_trial(optuna.trial.create_trial(values=[top1, macs], constraints=constraints))
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL))
    front = [t.number for t in front_trials(study)]
    assert front == [t.number for t in study.best_trials]
    assert front == ([0, 1, 3, 4, 6] if constrained else [0, 1, 2, 4, 6])  # both equal points, never the infeasible one


def test_studies_and_pareto_print_what_optunas_own_reads_give_with_or_without_the_trial_cache(results_study, large, tmp_path, monkeypatch):
    url, study = results_study
    optuna.copy_study(from_study_name="large", from_storage=large, to_storage=url)

    def cli(*args):
        result = CliRunner().invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    commands = [("studies", "--storage", url, "--json"), ("pareto", "--storage", url, "--study", "large", "--json")]
    cold, warm = [], []
    for i, command in enumerate(commands):
        monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / f"cache-{i}"))  # empty: the first command on this machine
        cold.append(cli(*command))
        warm.append(cli(*command))
    assert cold == warm
    rows = json.loads(cold[0])
    for summary, row in zip(optuna.get_all_study_summaries(url), rows, strict=True):
        trials = optuna.load_study(study_name=summary.study_name, storage=url).trials
        assert row["study"] == summary.study_name and row["trials"] == summary.n_trials == len(trials)
        assert row["complete"] == sum(t.state == TrialState.COMPLETE for t in trials)
    best = optuna.load_study(study_name="large", storage=url).best_trials
    assert sorted(p["number"] for p in json.loads(cold[1])["front"]) == sorted(t.number for t in best)


def test_the_dashboard_adds_only_what_is_missing_at_each_start(results_study, tmp_path):
    from dashboards.dashboard import publish

    url, study = results_study
    exported = []

    def export(trial):
        exported.append(trial.number)
        return f"trial {trial.number}\n"

    first = publish(study, export, tmp_path / "artifacts")
    assert first["notes"] == len({t.number for t in study.best_trials} | {t.number for t in study.trials if t.user_attrs.get(record.PRESET)})
    assert sorted(exported) == sorted(t.number for t in study.trials if t.state == TrialState.COMPLETE)  # searched without artifacts
    exported.clear()
    again = publish(optuna.load_study(study_name=study.study_name, storage=open_storage(url)), export, tmp_path / "artifacts")
    assert again["notes"] == again["artifacts"] == 0 and exported == []


def test_the_commands_that_read_studies_never_load_torch_and_importing_nas_still_registers_with_timm():
    code = (
        "import sys, nas.cli, nas.summary, nas.study, dashboards.report, dashboards.dashboard\n"
        "assert not {'torch', 'timm', 'ray'} & set(sys.modules), {'torch', 'timm', 'ray'} & set(sys.modules)\n"
        "import timm\n"
        "assert timm.is_model('nas_unified')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
