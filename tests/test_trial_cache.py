"""The trial cache kept on disk between commands (nas.trial_cache) is only ever a faster way to read the study:
a file another user could plant or change is never loaded, and a file written by another Optuna or for another
database is read again from the database, never trusted."""

import os
import pickle
import shutil
from pathlib import Path

import optuna
import pytest

from nas.study import open_storage


class Planted:
    """A pickle that, loaded, creates the file `marker`: what a planted cache file could run instead."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("NAS_CACHE_DIR", str(folder))
    return folder


def make_study(url: str, n: int = 20, name: str = "s") -> None:
    study = optuna.create_study(study_name=name, storage=url, directions=["maximize", "minimize"])
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    study.add_trials([optuna.trial.create_trial(values=[i, -i], params={"x": i / n}, distributions=dist) for i in range(n)])


def command(url: str, name: str = "s") -> list[optuna.trial.FrozenTrial]:
    """What a command sees of the study, read through the trial cache as every command reads it."""
    return optuna.load_study(study_name=name, storage=open_storage(url, heartbeat=False)).get_trials(deepcopy=False)


def cache_file(cache: Path) -> Path:
    (path,) = [p for p in cache.rglob("study-*") if p.is_file()]
    return path


@pytest.fixture
def study_and_its_cache_file(tmp_path, cache) -> tuple[str, Path]:
    url = f"sqlite:///{tmp_path}/s.db"
    make_study(url)
    assert len(command(url)) == 20  # the first command writes the cache file
    return url, cache_file(cache)


@pytest.mark.parametrize("opened", ["the file", "its folder", "the cache root", "none: another user owns them"])
def test_a_pickle_planted_where_other_users_can_write_is_never_loaded(study_and_its_cache_file, cache, tmp_path, monkeypatch, opened):
    url, path = study_and_its_cache_file
    marker = tmp_path / "planted-code-ran"
    path.write_bytes(pickle.dumps(Planted(marker)))
    if opened == "the file":
        path.chmod(0o666)
    elif opened == "its folder":
        path.parent.chmod(0o777)
    elif opened == "the cache root":
        cache.chmod(0o777)
    else:
        real = os.geteuid()
        monkeypatch.setattr(os, "geteuid", lambda: real + 1)

    trials = command(url)
    assert not marker.exists()
    assert [t.values for t in trials] == [t.values for t in optuna.load_study(study_name="s", storage=url).trials]


def test_cache_folders_and_files_are_made_for_their_owner_alone(study_and_its_cache_file, cache):
    _, path = study_and_its_cache_file
    assert path.stat().st_mode & 0o777 == 0o600
    for folder in [path.parent, *[p for p in path.parents if cache in p.parents]]:
        assert folder.stat().st_mode & 0o777 == 0o700, folder


def tampered(path: Path, **changes) -> None:
    """Rewrite a cache file as this user, with every cached trial's first value set to -1 and `changes` made."""
    saved = pickle.loads(path.read_bytes())
    for trial in saved["info"]["trials"].values():
        trial.values = [-1.0, trial.values[1]]
    saved.update(changes)
    path.write_bytes(pickle.dumps(saved))


def test_a_cache_written_by_another_optuna_version_is_read_again_from_the_database(study_and_its_cache_file):
    url, path = study_and_its_cache_file
    tampered(path, optuna="4.5.0")
    assert [t.values[0] for t in command(url)] == list(range(20))
    assert pickle.loads(path.read_bytes())["optuna"] == optuna.__version__  # rebuilt


def test_a_cache_file_of_another_database_is_not_restored_even_with_the_same_study_and_trials(study_and_its_cache_file, tmp_path):
    url, path = study_and_its_cache_file
    shutil.copy(tmp_path / "s.db", tmp_path / "copy.db")  # same study name, same trials and ids
    copy = f"sqlite:///{tmp_path}/copy.db"
    command(copy)
    (copy_file,) = [p for p in path.parents[1].rglob("study-*") if p != path]
    tampered(path)
    shutil.copy(path, copy_file)  # the first database's cache where the copy's belongs
    assert [t.values[0] for t in command(copy)] == list(range(20))
