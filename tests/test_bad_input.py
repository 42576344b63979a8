"""Bad input, table-driven: every case prints one line naming the problem and exits 2; --debug shows
the traceback. Plus the security promises: loopback by default, safe loaders, no passwords in output."""

import ipaddress
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from faultlib import free_port, wait_for_port
from nas.cli import main
from searchspace import preset
from searchspace.space import SPACE_DIR

TINY = yaml.safe_load((SPACE_DIR / "tiny.yaml").read_text())
SWIN = preset("swin_t").to_dict()


def yaml_file(base: dict, name: str):
    """A writer of `base` edited (or of raw text) to tmp/name, for one kind of file."""

    def write(tmp, edit=None, text=None):
        path = tmp / name
        if text is None:
            data = yaml.safe_load(yaml.safe_dump(base))
            edit(data)
            text = yaml.safe_dump(data)
        path.write_text(text)
        return str(path)

    return write


space_file = yaml_file(TINY, "space.yaml")
spec_file = yaml_file(SWIN, "spec.yaml")


def stage0(key, value):
    return lambda d: d["stages"][0].update({key: value})


def mixer0(key, value):
    return lambda d: d["stages"][0]["mixer"].update({key: value})


def readonly_storage(tmp):
    db = tmp / "ro.db"
    sqlite3.connect(db).close()
    return f"sqlite:///file:{db}?mode=ro&uri=true"


def search(*extra):
    return ["search", "--budget", "4.5G", "--space", "tiny", "--subset", "64", *extra]


# (case, argv builder given tmp_path, what the line must say)
CASES = [
    ("space: malformed YAML", lambda t: ["space", "show", space_file(t, text="stage:\n  depth: [1, 2\n")], "malformed YAML"),
    ("space: unknown key", lambda t: ["space", "show", space_file(t, lambda d: d.update(optimizer="adam"))], "optimizer: unknown key (allowed: name"),
    ("space: unknown dimension", lambda t: ["space", "show", space_file(t, lambda d: d["mixer"].update(kernal=[3]))], "mixer.kernal: unknown dimension (allowed:"),
    ("space: unknown value", lambda t: ["space", "show", space_file(t, lambda d: d["mixer"].update(connectivity=["windoww"]))], "'windoww' is not allowed (allowed: 'window'"),
    ("space: empty choices", lambda t: ["space", "show", space_file(t, lambda d: d["stage"].update(ffn_ratio=[]))], "empty list of choices"),
    ("space: contradictory conditions", lambda t: ["space", "show", space_file(t, lambda d: d["mixer"].update(connectivity=["halo"], dynamic=["static"]))], "connectivity 'halo' admits dynamic attention"),
    ("space: dimension out of range", lambda t: ["space", "show", space_file(t, lambda d: d["stage"].update(depth={"low": 0, "high": 2}))], "greater than or equal to 1"),
    ("spec: malformed YAML", lambda t: ["arch", "show", spec_file(t, text="stages: [\n")], "malformed YAML"),
    ("spec: unknown key", lambda t: ["arch", "show", spec_file(t, stage0("depht", 2))], "stages[0].depht: unknown key (allowed: depth, dim"),
    ("spec: unknown value", lambda t: ["arch", "show", spec_file(t, mixer0("dynamic", "attn"))], "stages[0].mixer.dynamic: 'attn' is not allowed"),
    ("spec: invalid combination", lambda t: ["arch", "show", spec_file(t, lambda d: d["stages"][0].update(mixer={"connectivity": "global", "dynamic": "static", "heads": 3}))], "tie the network to one input size"),
    ("spec: dimension out of range", lambda t: ["arch", "show", spec_file(t, stage0("depth", 0))], "stages[0].depth: Input should be greater than or equal to 1"),
    ("budget: abc", lambda t: ["space", "sample", "--budget", "abc"], "budget 'abc' is not a number of MACs"),
    ("budget: -1", lambda t: ["space", "sample", "--budget", "-1"], "budget '-1' is not a number of MACs"),
    ("budget: 0", lambda t: ["space", "sample", "--budget", "0"], "must be a positive number of MACs"),
    ("budget: 4.5X", lambda t: ["space", "sample", "--budget", "4.5X"], "budget '4.5X' is not a number of MACs"),
    ("budget: below every point", lambda t: ["search", "--budget", "1M", "--space", "tiny"], "its cheapest point"),
    ("data: missing path", lambda t: search("--data", str(t / "nowhere")), "no such directory; expected a Fashion-MNIST IDX folder"),
    ("data: wrong layout", lambda t: search("--data", str((t / "notes.txt").parent if (t / "notes.txt").write_text("x") else t)), "none of these layouts is there"),
    ("data: empty folder", lambda t: search("--data", str((t / "empty").mkdir() or t / "empty")), "it is empty"),
    ("storage: bad URL", lambda t: search("--storage", "not a url"), "is not a SQLAlchemy URL"),
    ("storage: read-only file", lambda t: search("--storage", readonly_storage(t)), "readonly database"),
    ("storage: unreachable server", lambda t: search("--storage", "postgresql+psycopg2://nas:pw@127.0.0.1:1/nas"), "cannot open the study storage postgresql+psycopg2://nas:***@127.0.0.1:1/nas"),
    ("ray: unreachable address", lambda t: search("--address", "127.0.0.1:1"), "cannot reach the Ray cluster at 127.0.0.1:1"),
    ("time limit: not a duration", lambda t: search("--time-limit", "soon"), "--time-limit 'soon'"),
    ("memory cap: not a size", lambda t: search("--max-memory-per-trial", "lots"), "--max-memory-per-trial 'lots'"),
    ("latency limit: not a duration", lambda t: search("--max-latency", "fast"), "--max-latency 'fast': write a latency such as 40ms"),
    ("latency table: missing file", lambda t: search("--latency", "--latency-table", str(t / "lat.json")), "no such latency table (write one with nas latency build"),
    ("latency table: without a use", lambda t: search("--latency-table", str(t / "lat.json")), "--latency-table gives the latency --latency or --max-latency use"),
    ("band: empty", lambda t: search("--min-macs", "5G"), "the MACs band 5.00G-4.50G is empty"),
    ("latency clock: cpu on two threads", lambda t: search("--latency", "--latency-clock", "cpu", "--latency-threads", "2"), "--latency-clock cpu times one CPU thread"),
    ("band: twice", lambda t: ["search", "--budget", "1G-4.5G", "--min-macs", "2G", "--space", "tiny"], "give the lower MACs bound once"),
]
STUDY_CASES = [
    ("export: unknown study", lambda url, t: ["export", "--storage", url, "--study", "nope", "--best"], "no study 'nope' in"),
    ("export: unknown trial", lambda url, t: ["export", "--storage", url, "--trial", "999"], "has no trial 999"),
    ("export: unfinished trial", lambda url, t: ["export", "--storage", url, "--trial", "6"], "is FAIL (diverged"),
    ("export: unwritable output", lambda url, t: ["export", "--storage", url, "--best", "-o", str(t / "no" / "dir" / "m.yaml")], "cannot write"),
    ("report: unwritable output", lambda url, t: ["report", "--storage", url, "-o", str(t / "no" / "r.html")], "cannot write"),
]


def one_line_error(args):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("nas: error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


@pytest.mark.parametrize("case, argv, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(case, argv, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = one_line_error(argv(tmp_path))
    assert message in line, line


@pytest.mark.parametrize("case, argv, message", STUDY_CASES, ids=[c[0] for c in STUDY_CASES])
def test_bad_results_requests_are_one_line_and_exit_2(case, argv, message, results_study, tmp_path):
    url, _ = results_study
    line = one_line_error(argv(url, tmp_path))
    assert message in line, line


def test_at_least_twenty_cases_are_covered():
    assert len(CASES) + len(STUDY_CASES) >= 20


def test_debug_shows_the_traceback_and_plain_runs_do_not(tmp_path):
    nas = str(Path(sys.executable).parent / "nas")
    plain = subprocess.run([nas, "space", "sample", "--budget", "4.5X"], capture_output=True, text=True)
    debug = subprocess.run([nas, "--debug", "space", "sample", "--budget", "4.5X"], capture_output=True, text=True)
    assert plain.returncode == 2 and plain.stderr.count("\n") == 1 and "Traceback" not in plain.stderr
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "NasError" in debug.stderr


def listening_addresses(port: int) -> set[str]:
    """The IPv4 and IPv6 addresses something listens on at `port`, as the kernel lists them (Linux)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(address)
                words = [raw[i : i + 4][::-1] for i in range(0, len(raw), 4)]  # each 32-bit word is little-endian
                found.add(str(ipaddress.ip_address(b"".join(words))))
    return found


def test_the_dashboard_listens_on_loopback_only_unless_told(results_study, tmp_path):
    url, _ = results_study
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "nas"), "dashboard", "--storage", url, "--port", str(port), "--artifact-dir", str(tmp_path / "a")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_for_port(port, server), "the dashboard did not start"
        assert listening_addresses(port) == {"127.0.0.1"}
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_exported_provenance_and_output_never_carry_the_storage_password(results_study, tmp_path):
    from nas.export import model_config
    from searchspace import NasError

    from nas.study import open_storage

    _, study = results_study
    config = model_config(study, study.best_trials[0], "postgresql://nas:hunter2@db.example:5432/nas")
    assert "hunter2" not in yaml.safe_dump(config) and config["provenance"]["storage"] == "postgresql://nas:***@db.example:5432/nas"
    with pytest.raises(NasError) as err:
        open_storage("postgresql+psycopg2://nas:hunter2@127.0.0.1:1/nas")
    assert "hunter2" not in str(err.value)
