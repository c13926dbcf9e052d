"""A sweep's grid in several processes: leases, concurrent results, --workers, --shard, submitit, --status."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from facetransfer.cli import main
from facetransfer.sweep import ResultsTable, load_sweep_config, run_sweep
from facetransfer.sweep.parallel.lease import (
    Heartbeat,
    Lease,
    LeaseBook,
    WorkerIdentity,
    read_leases,
)
from facetransfer.sweep.parallel.run_options import ParallelOptions
from facetransfer.sweep.parallel.worker import record_row
from facetransfer.sweep.results import FIELDS

from .fakes import REPO
from .test_sweep import TINY_BACKBONE, read_rows, tiny_sweep, write_config

# the demo's five strategies, on a random-init scratch_cnn so that no pretrained weights are needed
ALL_STRATEGIES = [
    {"strategy": "scratch", "backbone": "scratch_cnn"},
    {"strategy": "features_logreg", "backbone": "scratch_cnn"},
    {"strategy": "prototype", "backbone": "scratch_cnn"},
    {"strategy": "linear_probe", "backbone": "scratch_cnn"},
    {"strategy": "finetune", "backbone": "scratch_cnn", "model": {"freeze": "first:1"}},
]
METRICS = ("identities", "test_images", "pool_size", "test_top1", "test_top5", "test_macro_f1", "device")


def sweep_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def sweep_cmd(config: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "facetransfer.sweep", "--config", str(config), "--no-progress", *options]


def by_cell(rows: list[dict[str, str]]) -> dict[tuple[str, str, str], dict[str, str]]:
    keys = [(r["method"], r["train_samples"], r["seed"]) for r in rows]
    assert len(keys) == len(set(keys)), f"a cell has two rows: {keys}"
    return {k: {m: r[m] for m in METRICS} for k, r in zip(keys, rows)}


# --- options: one clear line ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "options, message",
    [
        (["--shard", "3/2"], "--shard: '3/2' is not i/n with 0 <= i < n"),
        (["--shard", "one/two"], "--shard: 'one/two' is not i/n"),
        (["--workers", "0"], "--workers: '0' is not a positive number of worker processes or 'auto'"),
        (["--shard", "0/2", "--workers", "2"], "--shard i/n makes this process one worker started by another scheduler"),
        (["--slurm_partition", "gpu"], "--slurm_partition is an option of the SLURM launcher: add --launcher slurm"),
        (["--launcher", "pbs"], "--launcher: unknown launcher 'pbs'; known: slurm, submitit_local"),
        (["--lease_seconds", "0"], "--lease_seconds: 0.0 is not a positive number of seconds"),
        pytest.param(["--launcher", "slurm"], "--launcher slurm: no SLURM on this machine (sbatch/srun not found)",
                     marks=pytest.mark.skipif(shutil.which("sbatch") is not None, reason="a SLURM machine would submit")),
    ],
)
def test_bad_run_options_are_one_line_before_any_work(options, message, tmp_path, capsys):
    config = write_config(tmp_path, tiny_sweep(tmp_path))
    assert main(["sweep", "--config", str(config), *options]) == 2
    err = capsys.readouterr().err
    assert f"facetransfer: error: {message}" in err and "Traceback" not in err
    assert not (tmp_path / "results").exists()


def test_sweep_help_and_status_start_without_lightning(tmp_path):
    """`sweep --help` names where the data/trainer/model keys are listed; neither it nor `--status` imports Lightning."""
    (tmp_path / "sweep.json").write_text('{"name": "tiny"}')
    script = (
        "import contextlib, io, sys\nfrom facetransfer.cli import main\nout = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    try:\n        main(['sweep', '--help'])\n    except SystemExit:\n        pass\n"
        "    code = main(['sweep', '--status', sys.argv[1]])\n"
        "text = ' '.join(out.getvalue().split())\n"
        "print(code, 'lightning' in sys.modules, \"--model.* options of 'facetransfer fit --help'\" in text)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, env=sweep_env(),
                          timeout=300)
    assert done.stdout.split() == ["0", "False", "True"], done.stderr[-2000:]


def test_status_of_a_folder_without_a_sweep_is_one_line(tmp_path, capsys):
    assert main(["sweep", "--status", str(tmp_path)]) == 2
    assert f"facetransfer: error: --status {tmp_path}: no sweep there (no results.csv, sweep.json or leases)" in capsys.readouterr().err


# --- leases and the folder lock ----------------------------------------------------------------------
def test_lease_is_exclusive_until_its_worker_is_silent_then_taken_over(tmp_path):
    key = ("scratch/scratch_cnn", 6, 0)
    a = LeaseBook(tmp_path, WorkerIdentity.here("worker 0/2"), lease_seconds=0.5)
    b = LeaseBook(tmp_path, WorkerIdentity.here("worker 1/2"), lease_seconds=30)
    with a.alive(), b.alive():
        mine = a.claim(key, "scratch N=6 seed=0", "fp").lease
        assert mine is not None and mine.attempt == 1
        assert b.claim(key, "scratch N=6 seed=0", "fp").lease is None  # alive: refused
        stored = json.loads(a.path(key).read_text())
        assert stored["cell"] == list(key) and stored["fingerprint"] == "fp" and stored["host"] == socket.gethostname()
        assert stored["pid"] == os.getpid() and stored["worker"] == "worker 0/2" and stored["lease_seconds"] == 0.5

        with Heartbeat(a, mine):  # renewed every 0.125 s: alive past its 0.5 s
            time.sleep(0.8)
            assert b.claim(key, "scratch N=6 seed=0", "fp").lease is None
        time.sleep(0.6)  # no heartbeat for longer than the lease: taken for dead, though its process runs
        claim = b.claim(key, "scratch N=6 seed=0", "fp")
        assert claim.lease is not None and claim.lease.attempt == 2 and claim.replaced.holder == mine.holder
        assert re.fullmatch(r"it has been silent for \d+ s \(lease 0.5 s\)", claim.reason), claim.reason
        assert not a.renew(mine) and not a.holds(mine)  # the old holder learns it lost the cell ...
        a.release(mine)
        assert b.holds(claim.lease)  # ... cannot give back what is no longer its own ...
        plan = SimpleNamespace(output_dir=tmp_path, table=ResultsTable(tmp_path / "results.csv"), cells=[SimpleNamespace(key=key)])
        row = {f: 0 for f in FIELDS} | {"method": key[0], "train_samples": key[1], "seed": key[2], "device": "cpu"}
        assert record_row(SimpleNamespace(key=key), mine, row, plan, a) == (False, False)  # ... nor record its row
        assert not plan.table.path.exists() and a.path(key).is_file()
        assert record_row(SimpleNamespace(key=key), claim.lease, row, plan, b) == (True, True)
        assert plan.table.finished_keys() == {key} and not b.path(key).exists()
        beat = Heartbeat(a, mine).start()
        time.sleep(0.3)
        assert beat.lost
        beat.stop()


def _hold_a_lease_then_sleep(folder: str, ready) -> None:
    book = LeaseBook(folder, WorkerIdentity.here("worker 1/2"), lease_seconds=300)
    with book.alive():
        book.claim(("scratch/scratch_cnn", 6, 0), "scratch N=6 seed=0", "fp")
        ready.set()
        time.sleep(300)


def test_a_killed_workers_cell_is_free_at_once(tmp_path):
    """The heartbeat is fresh, but the holder's liveness lock went with its process."""
    context = multiprocessing.get_context("fork")
    ready = context.Event()
    holder = context.Process(target=_hold_a_lease_then_sleep, args=(str(tmp_path), ready))
    holder.start()
    assert ready.wait(60)
    me = LeaseBook(tmp_path, WorkerIdentity.here("worker 0/2"))
    with me.alive():
        assert me.claim(("scratch/scratch_cnn", 6, 0), "scratch N=6 seed=0", "fp").lease is None
        os.kill(holder.pid, signal.SIGKILL)
        holder.join()
        claim = me.claim(("scratch/scratch_cnn", 6, 0), "scratch N=6 seed=0", "fp")
    assert claim.lease is not None and claim.replaced.pid == holder.pid and claim.reason == "its process has ended"


# --- the folder's files under concurrent writers ------------------------------------------------------
def _append_rows(folder: str, worker: int, count: int) -> None:
    table = ResultsTable(Path(folder) / "results.csv")
    for i in range(count):
        row = {f: 0 for f in FIELDS} | {"method": f"m{worker}", "train_samples": i + 1, "seed": 0, "device": "cpu"}
        table.append(row)


def test_rows_appended_by_several_processes_at_once_are_all_kept(tmp_path):
    context = multiprocessing.get_context("fork")  # plain file work: no need for a fresh interpreter
    processes = [context.Process(target=_append_rows, args=(str(tmp_path), w, 15)) for w in range(4)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(60)
        assert p.exitcode == 0
    rows = ResultsTable(tmp_path / "results.csv").rows()
    assert len(rows) == 60 and len({(r["method"], r["train_samples"]) for r in rows}) == 60
    assert not list(tmp_path.glob(".results.csv.*.tmp"))


def test_feature_store_computes_a_key_once_for_concurrent_workers(tmp_path):
    import facetransfer as ft
    from facetransfer.features import BackboneFeatures
    from facetransfer.sweep.feature_store import FeatureStore, all_keys

    data = ft.FaceDataModule("synthetic", dataset_args={"num_identities": 6, "images_per_identity": 8, "image_size": 40},
                             num_workers=0)
    keys = all_keys([data.manifest])
    model = ft.FaceClassifier(backbone="scratch_cnn", backbone_args=TINY_BACKBONE, freeze="all")
    extractor = BackboneFeatures(model.backbone, identity=model.feature_identity())
    stores = [FeatureStore(tmp_path / "features", data.source, keys, face_crop=data.face_crop) for _ in range(2)]
    start, results = threading.Barrier(2), {}

    def work(i: int) -> None:
        start.wait()
        results[i] = stores[i].all_features(extractor)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(s.computed for s in stores) == 1 and sum(s.loaded for s in stores) == 1
    assert results[0].shape == (len(keys), 32) and bool((results[0] == results[1]).all())
    assert len(list((tmp_path / "features").glob("*.pt"))) == 1


# --- the grid in several processes ------------------------------------------------------------------
@pytest.mark.slow
def test_two_workers_give_the_rows_and_metrics_of_one_worker(tmp_path, capfd):
    """The demo's five strategies, one torch thread per cell in both runs as in demo.yaml: on a CPU the
    thread count can change a cell trained from random init (summation order; docs/performance.md)."""
    single = run_sweep(load_sweep_config(tiny_sweep(tmp_path / "one", methods=ALL_STRATEGIES, num_threads=1)),
                       progress=False, report=False, echo=lambda _: None)
    assert len(single.ran) == 10

    config = load_sweep_config(tiny_sweep(tmp_path / "two", methods=ALL_STRATEGIES, num_threads=1))
    lines: list[str] = []
    two = run_sweep(config, progress=False, echo=lines.append, parallel=ParallelOptions.from_args(workers="2"))
    workers_output = capfd.readouterr().out  # the worker processes print to the same terminal
    assert "[worker 0/2] " in workers_output and "[worker 1/2] " in workers_output  # both ran cells
    assert lines[-1].startswith("sweep tiny: 10 cells run by 2 workers, 0 skipped") and len(two.ran) == 10
    results = config.output_dir
    assert by_cell(read_rows(results / "results.csv")) == by_cell(read_rows(tmp_path / "one" / "results" / "results.csv"))
    assert two.report is not None and "| finetune/scratch_cnn | finetune |" in two.report.markdown
    assert not read_leases(results)
    assert len(list((results / "features").glob("*.pt"))) == 1  # three frozen-feature methods, one extraction


@pytest.mark.slow
def test_sigkill_of_a_worker_mid_cell_then_the_next_worker_runs_its_cell(tmp_path):
    config = tiny_sweep(tmp_path, train_samples=[6, 12, 18, "all"], trainer={"max_epochs": 3, "accelerator": "cpu"},
                        methods=[{"strategy": "scratch", "backbone": "scratch_cnn"}])
    results = tmp_path / "results"
    victim = subprocess.Popen(sweep_cmd(write_config(tmp_path, config), "--shard", "1/2"), cwd=tmp_path,
                              env=sweep_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline, held = time.monotonic() + 180, None
    while held is None and victim.poll() is None and time.monotonic() < deadline:
        held = next((lease for lease in read_leases(results) if lease.pid == victim.pid), None)
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert held is not None, f"the worker never claimed a cell: {victim.stderr.read().decode()[-2000:]}"
    assert [lease.cell for lease in read_leases(results)] == [held.cell]  # killed while running it: the lease stays
    assert ResultsTable(results / "results.csv").finished_keys() <= {("scratch/scratch_cnn", 6, 0)}

    lines: list[str] = []  # the other worker (lease 300 s: the dead worker's cell is free at once all the same)
    other = run_sweep(load_sweep_config(config), progress=False, echo=lines.append,
                      parallel=ParallelOptions.from_args(shard="0/2"))
    assert f"[worker 0/2] {held.label}: taking it over from worker 1/2 on {socket.gethostname()} (pid {victim.pid}): " \
           "its process has ended" in lines
    assert held.cell in other.ran
    rows = read_rows(results / "results.csv")
    assert sorted(by_cell(rows)) == sorted(("scratch/scratch_cnn", str(n), "0") for n in (6, 12, 18, 30))
    assert not read_leases(results)
    assert other.report is not None and other.report.table_path.is_file()  # by the worker that recorded the last row


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_workers_stop_when_their_sweep_is_killed_then_a_rerun_finishes_the_grid(tmp_path):
    config = tiny_sweep(tmp_path, train_samples=[6, 12, 18, "all"], trainer={"max_epochs": 6, "accelerator": "cpu"},
                        methods=[{"strategy": "scratch", "backbone": "scratch_cnn"}], num_threads=1)
    cmd = sweep_cmd(write_config(tmp_path, config), "--workers", "2")
    results = tmp_path / "results"
    sweep = subprocess.Popen(cmd, cwd=tmp_path, env=sweep_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline, workers = time.monotonic() + 180, set()
    while not workers and sweep.poll() is None and time.monotonic() < deadline:
        workers = {lease.pid for lease in read_leases(results)}
        time.sleep(0.05)
    sweep.send_signal(signal.SIGKILL)
    sweep.wait()
    assert workers, f"no worker claimed a cell: {sweep.stderr.read().decode()[-2000:]}"
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers)  # each worker stopped with the sweep that started it
    done = subprocess.run(cmd, cwd=tmp_path, env=sweep_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(by_cell(read_rows(results / "results.csv"))) == sorted(
        ("scratch/scratch_cnn", str(n), "0") for n in (6, 12, 18, 30))
    assert not read_leases(results)


@pytest.mark.slow
def test_submitit_local_executor_runs_the_grid(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", sweep_env()["PYTHONPATH"])  # submitit's job processes import facetransfer
    config = load_sweep_config(tiny_sweep(tmp_path))
    lines: list[str] = []
    result = run_sweep(config, progress=False, echo=lines.append,
                       parallel=ParallelOptions.from_args(workers="2", launcher="submitit_local", lease_seconds=30))
    assert any(line.startswith("submitted 2 workers as local submitit job") for line in lines)
    assert len(result.jobs) == 2 and all(job.state == "FINISHED" for job in result.jobs)
    rows = read_rows(config.output_dir / "results.csv")
    assert sorted(by_cell(rows)) == sorted((m, str(n), "0") for m in ("scratch/scratch_cnn", "features_logreg/random_cnn")
                                           for n in (6, 30))
    assert result.report is not None and result.report.table_path.is_file()  # written by the last worker
    assert "sweep tiny: 4 cells run by 2 workers" in lines[-1]
    logs = "".join(p.read_text() for p in (config.output_dir / "submitit").glob("*_log.out"))
    assert "[worker 0/2]" in logs and "[worker 1/2]" in logs


# --- status -------------------------------------------------------------------------------------------
def test_status_shows_done_running_pending_and_time_left(tmp_path, capsys):
    config = load_sweep_config(tiny_sweep(tmp_path, train_samples=[6, 12, 18, "all"],
                                          methods=[{"strategy": "scratch", "backbone": "scratch_cnn"}]))
    run_sweep(config, progress=False, report=False, echo=lambda _: None)
    results = config.output_dir
    table = results / "results.csv"
    text = table.read_text().splitlines()
    table.write_text("\n".join(text[:3]) + "\n")  # keep N=6 and N=12: two cells done
    other = LeaseBook(results, WorkerIdentity("h1", "worker 1/2", "node7", 4242), lease_seconds=300)
    dead = LeaseBook(results, WorkerIdentity("h2", "worker 0/2", "node8", 77), lease_seconds=1)
    with other.alive():  # a running worker holds its liveness lock; the dead one's is gone
        other.claim(("scratch/scratch_cnn", 18, 0), "scratch/scratch_cnn N=18 seed=0", "fp")
        lease = dead.claim(("scratch/scratch_cnn", 30, 0), "scratch/scratch_cnn N=30 (all) seed=0", "fp").lease
        stale = Lease(**{**lease.__dict__, "heartbeat_at": time.time() - 100})
        dead.path(lease.cell).write_text(stale.to_json())
        assert main(["sweep", "--status", str(results)]) == 0
        out = capsys.readouterr().out
        other.release(other.read(("scratch/scratch_cnn", 18, 0)))
    assert f"sweep tiny ({results}): 4 cells: 2 done, 1 running, 1 pending" in out
    assert "  scratch/scratch_cnn N=18 seed=0: worker 1/2 on node7 (pid 4242), since " in out and "heartbeat 0 s ago" in out
    assert "stopped workers" in out
    assert "  scratch/scratch_cnn N=30 (all) seed=0: worker 0/2 on node8 (pid 77), last heartbeat 100 s ago" in out
    assert "pending: scratch/scratch_cnn N=30 (all) seed=0" in out
    assert "time left: ~" in out and "(from 2 finished cells)" in out

    # a worker on this folder runs the pending cell at once, the stopped worker's cell too, and waits for none
    lines: list[str] = []
    run_sweep(config, progress=False, report=False, echo=lines.append)
    assert any("N=30 (all) seed=0: taking it over from worker 0/2 on node8 (pid 77)" in line for line in lines)
    assert main(["sweep", "--status", str(results)]) == 0
    assert "4 cells: 4 done, 0 running, 0 pending" in (out := capsys.readouterr().out) and "complete:" in out


def test_a_worker_ends_when_its_parent_is_killed(tmp_path):
    """Killing only the parent of `sweep --workers K` leaves no worker running (a re-run finishes their cells)."""
    ready = tmp_path / "ready"
    child = (f"import os, pathlib, time; from facetransfer.sweep.parallel.launcher import stop_with; "
             f"stop_with(os.getppid()); pathlib.Path({str(ready)!r}).write_text(str(os.getpid())); time.sleep(120)")
    parent = subprocess.Popen([sys.executable, "-c", f"import subprocess, sys, time; "
                               f"subprocess.Popen([sys.executable, '-c', {child!r}]); time.sleep(120)"])
    deadline = time.monotonic() + 60
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    worker = int(ready.read_text())
    parent.kill()
    parent.wait()

    def running() -> bool:
        try:
            return Path(f"/proc/{worker}/stat").read_text().split()[2] not in ("Z", "X")  # a zombie has ended
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 10
    while running() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not running()
