"""Starting a sweep's workers through submitit: processes on this machine (``--workers K``, the same as
``--launcher submitit_local``), each with one GPU or a share of the CPU cores, which this process waits
for; or a SLURM job array (``--launcher slurm``), whose tasks are requeued when preempted or out of
time. Each task is one worker of the sweep's folder (:mod:`~facetransfer.sweep.parallel.worker`);
docs/scaling.md tells the rest::

    >>> jobs = submit_workers(plan, ParallelOptions(workers=8, launcher="slurm",
    ...                       slurm=SlurmOptions(slurm_partition="gpu")), 8, echo=print)  # doctest: +SKIP
    submitted 8 workers as SLURM array job 123456 ...
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit

from ...errors import ConfigError
from ...io.images import usable_cpus
from ..config import SweepConfig
from ..plan import Echo, SweepPlan
from .run_options import ParallelOptions, Shard, SlurmOptions
from .worker import WorkerSettings, WorkersFailed, run_worker_process

SUBMITIT_DIR = "submitit"
LOCAL_TIMEOUT_MIN = 7 * 24 * 60  # submitit's local executor kills a job after its time limit (default 2 min)
MAX_REQUEUES = 3  # timeouts a task may be requeued after (preemptions are not counted)
GPU_ACCELERATORS = ("auto", "gpu", "cuda")


def worker_gpus(config: SweepConfig) -> list[str]:
    """The GPUs local workers are pinned to, as ``CUDA_VISIBLE_DEVICES`` entries (indices or UUIDs): the
    ones this process may use, none when the sweep trains on the CPU."""
    accelerator = str(config.trainer.get("accelerator", "auto"))
    if not {accelerator, *(str(m.trainer.get("accelerator", accelerator)) for m in config.methods)} & set(GPU_ACCELERATORS):
        return []
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip() and d.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def worker_count(parallel: ParallelOptions, plan: SweepPlan) -> int:
    """The workers to start, never more than the cells to run: ``--workers`` (``auto``: one per visible
    GPU, on a CPU as many as the cores allow at ``num_threads`` threads each); with a launcher and no
    ``--workers``, one per cell."""
    config = plan.config
    if parallel.workers == "auto":
        gpus = worker_gpus(config)
        count = len(gpus) if gpus else max(1, usable_cpus() // (config.num_threads or 1))
    else:
        count = parallel.workers or len(plan.pending)
    return max(1, min(count, len(plan.pending)))


def _check_one_device_per_cell(config: SweepConfig, count: int) -> None:
    for index, method in enumerate(config.methods):
        devices = method.trainer.get("devices", config.trainer.get("devices", "auto"))
        if str(devices) not in ("auto", "1", "-1", "[0]"):
            raise ConfigError(
                f"methods[{index}] ({method.name}): trainer.devices {devices!r} with --workers {count}: each worker "
                "has one GPU, so a cell uses one device (devices: auto or 1); run multi-GPU cells with --workers 1"
            )


def stop_with(parent: int) -> None:
    """End this process within a second of the process ``parent`` (checked from a daemon thread)."""

    def watch() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                os._exit(1)  # as a kill would: the lease of the cell in progress dies with this process
            except PermissionError:  # alive, and another user's
                pass

    threading.Thread(target=watch, name="sweep process watch", daemon=True).start()


@dataclass
class SweepWorkerTask:
    """A submitit task: worker ``index`` of ``count`` on the config's output folder (picklable).

    ``gpus``: worker ``k`` sees ``gpus[k % len(gpus)]`` alone; ``parent``: the process whose end stops it."""

    config: SweepConfig
    count: int
    lease_seconds: float
    threads: int | None
    report: bool
    quiet: bool = True
    gpus: tuple[str, ...] = ()
    parent: int | None = None

    def __call__(self, index: int) -> dict[str, Any]:
        if self.gpus:
            os.environ["CUDA_VISIBLE_DEVICES"] = self.gpus[index % len(self.gpus)]
        if self.parent is not None:
            stop_with(self.parent)
        settings = WorkerSettings(
            shard=Shard(index, self.count), lease_seconds=self.lease_seconds,
            threads=self.threads or self.config.num_threads or usable_cpus(), report=self.report, progress=False,
            quiet=self.quiet, tag=f"[worker {index}/{self.count}] ",
        )
        outcome = run_worker_process(self.config, settings, lambda text: print(text, flush=True))
        return {"ran": outcome.ran, "taken_over": outcome.taken_over, "completed_grid": outcome.completed_grid}


class RequeueingSweepWorkerTask(SweepWorkerTask, submitit.helpers.Checkpointable):
    """A task that submitit puts back in the queue when it is preempted or runs out of time
    (``checkpoint`` resubmits the same worker: leases and ``results.csv`` hold its progress)."""


def check_launcher(launcher: str) -> None:
    """Fail before any work when the launcher cannot submit from this machine."""
    if launcher == "slurm" and (shutil.which("sbatch") is None or shutil.which("srun") is None):
        raise ConfigError(
            "--launcher slurm: no SLURM on this machine (sbatch/srun not found); run the command on a SLURM login "
            "node, or try the same path here with --launcher submitit_local"
        )


def make_executor(folder: Path, launcher: str, slurm: SlurmOptions | None, count: int, name: str) -> submitit.Executor:
    """A submitit executor for ``count`` workers of one task each."""
    try:
        if launcher == "slurm":
            s = slurm or SlurmOptions()
            executor = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_max_num_timeout=MAX_REQUEUES)
            executor.update_parameters(
                name=name, timeout_min=s.slurm_time, nodes=1, tasks_per_node=1, gpus_per_node=s.slurm_gpus_per_task,
                cpus_per_task=s.slurm_cpus_per_task, mem_gb=s.slurm_mem_gb, slurm_partition=s.slurm_partition,
                slurm_account=s.slurm_account, slurm_array_parallelism=s.slurm_array_parallelism or count,
                slurm_setup=s.slurm_setup or None,
            )
        else:
            executor = submitit.AutoExecutor(folder=folder, cluster="local")
            executor.update_parameters(name=name, timeout_min=LOCAL_TIMEOUT_MIN, nodes=1, tasks_per_node=1, gpus_per_node=0)
    except ValueError as err:
        raise ConfigError(f"--launcher {launcher}: {err}") from None
    return executor


def submit_workers(
    plan: SweepPlan, parallel: ParallelOptions, count: int, *, report: bool = True, quiet: bool = True,
    progress: bool = False, echo: Echo = print,
) -> list[Any]:
    """Start ``count`` workers; return submitit's jobs. On this machine wait for them (see the module)."""
    config, local = plan.config, parallel.launcher != "slurm"
    folder = plan.output_dir / SUBMITIT_DIR
    if local:
        gpus = tuple(worker_gpus(config))
        if gpus and count > 1:
            _check_one_device_per_cell(config, count)
        threads = max(1, (config.num_threads or usable_cpus()) // count)
        task = SweepWorkerTask(config, count, parallel.lease_seconds, threads, report, quiet, gpus, os.getpid())
        kind = f"local submitit job {{}} ({'GPU ' + ', '.join(gpus[:count]) if gpus else 'CPU'}, {threads} torch thread(s) each)"
    else:
        task_class = RequeueingSweepWorkerTask if (parallel.slurm or SlurmOptions()).slurm_requeue else SweepWorkerTask
        task = task_class(config, count, parallel.lease_seconds, None, report, quiet)
        kind = "SLURM array job {}"
    executor = make_executor(folder, "submitit_local" if local else "slurm", parallel.slurm, count,
                             f"facetransfer-sweep-{config.name}")
    jobs = executor.map_array(task, range(count))
    kind = kind.format(str(jobs[0].job_id).split("_")[0])
    echo(f"submitted {count} workers as {kind} (logs: {folder}); follow it with: facetransfer sweep --status {plan.output_dir}")
    if local:
        _wait(jobs, plan, progress, echo)
    return jobs


def _relay(path: Path, offset: int, say: Echo) -> int:
    """The whole lines a worker wrote to ``path`` since ``offset`` (not submitit's own); the new offset."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            chunk = fh.read()
    except FileNotFoundError:
        return offset
    end = chunk.rfind(b"\n") + 1
    for line in chunk[:end].decode(errors="replace").splitlines():
        if not line.startswith("submitit "):
            say(line)
    return offset + end


def _wait(jobs: list[Any], plan: SweepPlan, progress: bool, echo: Echo) -> None:
    """Wait for local workers: their messages here, a bar over the grid. Raises :class:`WorkersFailed`
    when workers failed and left cells without a row."""
    from tqdm.auto import tqdm

    grid = {c.key for c in plan.cells}
    bar = tqdm(total=len(grid), initial=len(grid & plan.finished), desc="sweep", unit="cell", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    say = bar.write if progress else lambda text: print(text, flush=True)
    offsets = [0] * len(jobs)
    try:
        while True:
            running = any(not job.done() for job in jobs)
            offsets = [_relay(job.paths.stdout, offset, say) for job, offset in zip(jobs, offsets)]
            bar.n = len(grid & plan.table.finished_keys())
            bar.refresh()
            if not running:
                break
            time.sleep(0.5)
    except KeyboardInterrupt:  # the workers got the same Ctrl-C: they give their cells back
        for job in jobs:
            job.cancel(check=False)
        raise
    finally:
        bar.close()
    failures = []
    for index, job in enumerate(jobs):
        try:
            job.result()
        except Exception as err:  # submitit's FailedJobError / UncompletedJobError carry the worker's traceback
            failures.append(f"worker {index}/{len(jobs)}: {str(err).strip().splitlines()[-1]}")
    missing = grid - plan.table.finished_keys()
    for failure in failures:
        echo(f"{failure} (log: {jobs[0].paths.folder})")
    if failures and missing:
        raise WorkersFailed(
            f"{len(failures)} of {len(jobs)} workers failed ({'; '.join(failures)}) and {len(missing)} cell(s) have no "
            f"row; their logs are in {jobs[0].paths.folder}; run the same command to resume"
        )


__all__ = ["RequeueingSweepWorkerTask", "SweepWorkerTask", "check_launcher", "make_executor", "stop_with",
           "submit_workers", "worker_count", "worker_gpus"]
