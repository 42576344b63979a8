"""Installing the package: it takes version ranges, so it installs beside another torch; `make` installs the exact
versions of constraints.txt; `make search` installs no test extras."""

import subprocess
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


def dependencies() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {r.name: r for r in map(Requirement, project["dependencies"])}


def test_the_package_pins_no_exact_version_so_it_installs_beside_another_torch():
    deps = dependencies()
    assert not [str(r) for r in deps.values() if any(s.operator in ("==", "===") for s in r.specifier)]
    for name in ("torch", "torchvision", "optuna"):  # each bounded above: what the code is tested with
        assert {s.operator for s in deps[name].specifier} >= {">=", "<"}, deps[name]


def test_make_installs_the_exact_versions_of_constraints_txt_within_the_packages_ranges():
    pinned = [Requirement(line) for line in (ROOT / "constraints.txt").read_text().splitlines() if line.strip() and not line.startswith("#")]
    deps = dependencies()
    assert {r.name for r in pinned} >= {"torch", "torchvision"}
    for r in pinned:
        (version,) = [s.version for s in r.specifier if s.operator == "=="]
        assert deps[r.name].specifier.contains(version), (r, deps[r.name])


def planned_installs(target: str) -> list[str]:
    """The pip commands `make TARGET` runs on a fresh machine (make -n: printed, not run)."""
    done = subprocess.run(["make", "-n", "-B", target, "VENV=/nonexistent"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if "pip install" in line and "--upgrade pip" not in line]


def test_make_search_installs_no_test_extras_and_make_test_adds_them_both_with_the_constraints():
    search, test = planned_installs("search"), planned_installs("test")
    assert search and not [line for line in search if "[test]" in line]
    assert [line for line in test if "[test]" in line]
    assert all("-c constraints.txt" in line for line in search + test)
