"""Runs: each command's results in a folder of its own, a record written whatever the end, the newest
run of each command named under a lock, listing, finding and pruning (poolkit.common.runs)."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from poolkit.cli import app
from poolkit.common.errors import DataError, PoolkitError
from poolkit.common.run_index import INDEX, interrupted_run, read_run
from poolkit.common.run_record import RECORD, machine_name
from poolkit.common.runs import RESULTS_ENV, find_run, finish_run, latest_runs, list_runs, prune_runs, start_run
from poolkit.sweep.journal import carry_over


def record(run_folder: Path) -> dict:
    return json.loads((run_folder / RECORD).read_text())


def test_a_run_is_a_new_folder_with_its_record_written_at_start_and_end(tmp_path: Path) -> None:
    run = start_run("bench", tmp_path, ["poolkit", "bench", "-m", "relu"])
    assert run.folder.parent == tmp_path / "runs" and run.id.endswith("-bench-" + run.record["host"].split(".")[0][:30])
    started = record(run.folder)
    assert (
        started["status"] == "running"
        and started["exit_code"] is None
        and started["argv"][1:] == ["bench", "-m", "relu"]
    )
    assert started["machine"]["name"] == machine_name(
        started["machine"]["cpu"], started["machine"]["cpu_cores_logical"]
    )
    assert started["versions"]["poolkit"] == "0.1.0" and "torch" in started["versions"]
    (run.folder / "bench.json").write_text("{}")
    finish_run(run, 0)
    ended = record(run.folder)
    assert ended["status"] == "ok" and ended["exit_code"] == 0 and ended["files"] == ["bench.json"]
    assert ended["ended"] >= ended["started"] and ended["seconds"] >= 0


def test_runs_started_in_one_second_never_share_a_folder(tmp_path: Path) -> None:
    runs = [start_run("verify", tmp_path) for _ in range(3)]
    assert len({r.folder for r in runs}) == 3 and runs[1].id == runs[0].id + "-2" and runs[2].id == runs[0].id + "-3"


@pytest.mark.parametrize(("code", "status", "latest"), [(0, "ok", True), (1, "failed", True), (2, "error", False),
                                                         (130, "interrupted", False), (143, "interrupted", False)])  # fmt: skip
def test_the_exit_code_decides_the_status_and_whether_the_run_becomes_latest(
    tmp_path: Path, code: int, status: str, latest: bool
) -> None:
    run = start_run("verify", tmp_path)
    finish_run(run, code, None if code < 2 else "error: something")
    assert record(run.folder)["status"] == status
    assert ("verify" in latest_runs(tmp_path)) is latest


def test_an_older_run_ending_last_never_replaces_a_newer_latest(tmp_path: Path) -> None:
    older, newer = start_run("bench", tmp_path), start_run("bench", tmp_path)
    finish_run(newer, 0)
    finish_run(older, 0)  # a long run that started first ends last
    assert latest_runs(tmp_path)["bench"].id == newer.id
    index = json.loads((tmp_path / INDEX).read_text())
    assert index["latest"] == {"bench": newer.id}
    assert os.readlink(tmp_path / "latest" / "bench") == f"../runs/{newer.id}"


def test_a_lost_or_corrupt_index_is_rebuilt_from_the_records(tmp_path: Path) -> None:
    run = start_run("show", tmp_path)
    finish_run(run, 0)
    (tmp_path / INDEX).write_text('{"latest": {"show": "../../etc"')
    assert latest_runs(tmp_path)["show"].id == run.id
    (tmp_path / INDEX).write_text(json.dumps({"latest": {"show": "no-such-run"}}))
    assert latest_runs(tmp_path)["show"].id == run.id


def _finish_many(root: str, command: str, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        run = start_run(command, Path(root))
        finish_run(run, 0)
        ids.append(run.id)
    return ids


def test_commands_finishing_at_once_leave_a_whole_index_naming_the_newest(tmp_path: Path) -> None:
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        done = pool.starmap(_finish_many, [(str(tmp_path), c, 6) for c in ("bench", "verify", "bench", "verify")])
    index = json.loads((tmp_path / INDEX).read_text())  # whole JSON: never half of two writes
    for command in ("bench", "verify"):
        runs = list_runs(tmp_path, command)
        assert len(runs) == 12 and sum(len(d) for d in done) == 24
        assert index["latest"][command] == runs[-1].id  # the newest by start time


def test_a_run_killed_outright_reads_as_killed(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    run = start_run("sweep", tmp_path)
    run.record["pid"] = int(proc.stdout)  # a process that is gone; the record still says running
    run.write()
    assert read_run(run.folder).status == "killed" and "sweep" not in latest_runs(tmp_path)
    assert interrupted_run(tmp_path, "sweep").id == run.id  # what the next sweep resumes from


def test_find_a_run_by_id_start_command_earlier_or_folder(tmp_path: Path) -> None:
    a, b = start_run("bench", tmp_path), start_run("bench", tmp_path)
    v = start_run("verify", tmp_path)
    for run in (a, b, v):
        finish_run(run, 0)
    assert find_run(tmp_path, b.id).id == b.id and find_run(tmp_path, "bench").id == b.id
    assert find_run(tmp_path, "bench~1").id == a.id and find_run(tmp_path, str(v.folder)).id == v.id
    assert find_run(tmp_path, v.id[:-3]).id == v.id  # a unique start of its id
    with pytest.raises(DataError, match=r"bench has 2 finished run\(s\)"):
        find_run(tmp_path, "bench~2")
    with pytest.raises(DataError, match="is ambiguous"):
        find_run(tmp_path, a.id[:8])
    with pytest.raises(DataError, match=r"no run 'nope' .*\(commands with runs: bench, verify\)"):
        find_run(tmp_path, "nope")


def test_prune_keeps_the_newest_and_never_the_latest_a_live_run_or_a_stranger(tmp_path: Path) -> None:
    done = [start_run("bench", tmp_path) for _ in range(4)]
    for run in done:
        finish_run(run, 0)
    failed_last = start_run("bench", tmp_path)
    finish_run(failed_last, 2)  # newest, but an error: the latest stays done[-1]
    live = start_run("bench", tmp_path)  # still running (this process)
    stranger = tmp_path / "runs" / "someone-elses-folder"
    stranger.mkdir()
    (stranger / "keep.txt").write_text("x")
    assert [r.id for r in prune_runs(tmp_path, 1, dry_run=True)] == [r.id for r in done[:3]]
    assert all(r.folder.is_dir() for r in done)  # a dry run removes nothing
    removed = prune_runs(tmp_path, 2)
    assert [r.id for r in removed] == [r.id for r in done[:3]]  # keep 2: done[3] (the latest) and failed_last
    assert not any(r.folder.exists() for r in done[:3])
    assert done[3].folder.is_dir() and failed_last.folder.is_dir() and live.folder.is_dir() and stranger.is_dir()
    assert prune_runs(tmp_path, 1) == []  # keep 1: the newest (failed_last) and the latest (done[3]) both stay
    assert done[3].folder.is_dir() and failed_last.folder.is_dir()
    with pytest.raises(PoolkitError, match="keep at least 1"):
        prune_runs(tmp_path, 0)


def test_an_interrupted_sweep_carries_its_journal_and_bundles_into_the_next_run(tmp_path: Path) -> None:
    old, new = tmp_path / "runs" / "a" / "conformance", tmp_path / "runs" / "b" / "conformance"
    bundle = Path(f"{old}-bundles") / "conv-1"
    bundle.mkdir(parents=True)
    (bundle / "repro.py").write_text("print(1)")
    new.parent.mkdir(parents=True)
    line = {"cell": {"id": "c1"}, "outcome": "value-mismatch", "bundle": str(bundle.resolve())}
    Path(f"{old}.jsonl").write_text(json.dumps(line) + "\n")
    assert carry_over(old, new) is True
    moved = json.loads(Path(f"{new}.jsonl").read_text())
    assert moved["bundle"] == str((Path(f"{new}-bundles") / "conv-1").resolve())
    assert (Path(f"{new}-bundles") / "conv-1" / "repro.py").read_text() == "print(1)"
    assert Path(f"{old}.jsonl").is_file() and bundle.is_dir()  # the old run is left as it was
    assert carry_over(tmp_path / "none", new) is False


def test_the_cli_writes_a_run_and_lists_and_prunes_runs(models: Path, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "root"
    monkeypatch.setenv(RESULTS_ENV, str(root))
    args = ["verify", "--models", str(models), "--data", "synthetic", "--batches", "1", "--no-sensitivity"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    (run,) = list_runs(root)
    assert (run.folder / "verify.json").is_file() and run.status == "ok" and run.command == "verify"
    assert f"run: {run.folder}" in first.stderr and "verify: relu (1/" in first.stdout  # plain progress: not a terminal
    bad = CliRunner().invoke(app, ["verify", "--models", str(tmp_path / "empty"), "--data", "synthetic"])
    assert bad.exit_code == 2
    errored = list_runs(root)[-1]
    assert errored.status == "error" and errored.record["exit_code"] == 2 and "manifest" in errored.record["message"]
    assert latest_runs(root)["verify"].id == run.id  # an error never becomes the latest
    listed = CliRunner().invoke(app, ["runs", "list", "--json"])
    assert [r["status"] for r in json.loads(listed.stdout)["runs"]] == ["ok", "error"]
    pruned = CliRunner().invoke(app, ["runs", "prune", "--keep", "1", "--json"])
    assert json.loads(pruned.stdout)["removed"] == [] and pruned.exit_code == 0  # keep 1 of each: both stay
    assert CliRunner().invoke(app, ["runs", "prune", "--keep", "0"]).exit_code == 2


def test_an_option_naming_a_folder_writes_there_and_makes_no_run(models: Path, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "root"
    monkeypatch.setenv(RESULTS_ENV, str(root))
    args = ["verify", "--models", str(models), "--data", "synthetic", "--batches", "1", "--no-sensitivity"]
    result = CliRunner().invoke(app, [*args, "--results", str(tmp_path / "mine")])
    assert result.exit_code == 0 and (tmp_path / "mine" / "verify.json").is_file() and not root.exists()


@pytest.mark.slow  # the real CLI up to a runtime call that never returns
def test_a_run_stopped_inside_a_call_records_how_it_ended(models: Path, tmp_path: Path) -> None:
    import torch

    from tests.test_interrupts import VERIFY, Endless, descendants, rehash, start, stopped, wait_for_marker

    torch.jit.script(Endless()).save(str(models / "relu.torchscript.pt"))
    rehash(models, "torchscript")
    root = tmp_path / "root"
    os.environ[RESULTS_ENV], before = str(root), os.environ[RESULTS_ENV]
    try:
        proc = start([*VERIFY, "--models", str(models), "--runtime", "torchscript"])
    finally:
        os.environ[RESULTS_ENV] = before
    wait_for_marker(proc)
    code, _, _ = stopped(proc, signal.SIGTERM, descendants(proc.pid))
    (run,) = list_runs(root)
    assert code == 143 and run.status == "interrupted" and run.record["exit_code"] == 143
    assert run.record["message"].startswith("terminated (SIGTERM)") and "verify" not in latest_runs(root)


def test_version_and_python_dash_m() -> None:
    out = subprocess.run([sys.executable, "-m", "poolkit", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout == "poolkit 0.1.0\n"
    assert CliRunner().invoke(app, ["--version"]).stdout == "poolkit 0.1.0\n"
    completion = CliRunner().invoke(app, ["--show-completion", "bash"], env={"SHELL": "/bin/bash"})
    assert completion.exit_code == 0 and "_POOLKIT_COMPLETE" in completion.stdout


def test_a_sweep_in_a_new_run_resumes_the_last_sweep_run_when_it_was_interrupted(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "root"
    monkeypatch.setenv(RESULTS_ENV, str(root))
    args = ["sweep", "--layer", "activation", "--exporters", "torchscript-trace", "--input-size", "8x8", "--jobs", "1"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    (done,) = list_runs(root, "sweep")
    assert json.loads((done.folder / "conformance.json").read_text())["summary"]["cells"] == 13
    fresh = CliRunner().invoke(app, args)  # the last sweep run finished: a new one starts from nothing
    assert fresh.exit_code == 0 and "resum" not in fresh.stderr
    last = list_runs(root, "sweep")[-1]
    last.record.update(status="interrupted", exit_code=130)  # as Ctrl-C would have left it
    last.write()
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert f"resuming the interrupted sweep run {last.id}" in again.stderr and "resumed: 13 of 13 cells" in again.stderr
    newest = list_runs(root, "sweep")[-1]
    assert newest.id != last.id and (newest.folder / "conformance.jsonl").is_file()
    assert (last.folder / "conformance.json").is_file()  # the interrupted run is left as it was
    assert latest_runs(root)["sweep"].id == newest.id
