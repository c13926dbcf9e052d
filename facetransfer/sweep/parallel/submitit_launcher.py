"""``facetransfer sweep ... --launcher slurm``: the grid's workers as a SLURM job array, through submitit.

Each array task is one worker of the sweep's folder (worker ``i`` of the array's ``n``): it
builds the plan, checks it against ``sweep.json``, and claims cells until every cell has its
row, like any other worker; the task that records the last row writes the report. With
``--slurm_requeue`` (the default) a preempted or timed-out task is put back in the queue by
submitit: its cell in progress gives its lease back and runs again, finished cells stay.
``--launcher submitit_local`` runs the same tasks as processes on this machine (submitit's
local executor, CPU), which is how the path is tested without a cluster::

    >>> jobs = submit_workers(plan, ParallelOptions(workers=8, launcher="slurm",
    ...                                             slurm=SlurmOptions(partition="gpu")), echo=print)  # doctest: +SKIP
    submitted 8 workers as SLURM array job 123456 ...
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit

from ...errors import ConfigError
from ..config import SweepConfig
from ..plan import SweepPlan
from .run_options import ParallelOptions, SlurmOptions, cpu_count
from .shard import Shard
from .worker import ReportPolicy, WorkerSettings, WorkersFailed, run_worker_process

Echo = Callable[[str], None]
SUBMITIT_DIR = "submitit"
LOCAL_TIMEOUT_MIN = 7 * 24 * 60  # submitit's local executor kills a job after its time limit (default 2 min)
MAX_REQUEUES = 3  # timeouts a task may be requeued after (preemptions are not counted)


@dataclass
class SweepWorkerTask:
    """One array task: worker ``index`` of ``count`` on the config's output folder (picklable)."""

    config: SweepConfig
    count: int
    lease_seconds: float
    threads: int | None
    report: ReportPolicy
    quiet: bool = True

    def __call__(self, index: int) -> dict[str, Any]:
        settings = WorkerSettings(
            shard=Shard(index, self.count), lease_seconds=self.lease_seconds,
            threads=self.threads or self.config.num_threads or cpu_count(), report=self.report, progress=False,
            quiet=self.quiet, tag=f"[worker {index}/{self.count}] ",
        )

        def echo(text: str) -> None:
            print(text, flush=True)

        outcome = run_worker_process(self.config, settings, echo)
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
    """A submitit executor for ``count`` array tasks of one worker each."""
    try:
        if launcher == "slurm":
            slurm = slurm or SlurmOptions()
            executor = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_max_num_timeout=MAX_REQUEUES)
            executor.update_parameters(
                name=name, timeout_min=slurm.time_min, nodes=1, tasks_per_node=1, gpus_per_node=slurm.gpus_per_task,
                cpus_per_task=slurm.cpus_per_task, mem_gb=slurm.mem_gb, slurm_partition=slurm.partition,
                slurm_account=slurm.account, slurm_array_parallelism=slurm.array_parallelism or count,
                slurm_setup=slurm.setup or None,
            )
        else:
            executor = submitit.AutoExecutor(folder=folder, cluster="local")
            executor.update_parameters(name=name, timeout_min=LOCAL_TIMEOUT_MIN, nodes=1, tasks_per_node=1, gpus_per_node=0)
    except RuntimeError as err:  # submitit: no srun/sbatch on this machine
        raise ConfigError(f"--launcher {launcher}: {err} (run the command on a SLURM login node)") from None
    except ValueError as err:
        raise ConfigError(f"--launcher {launcher}: {err}") from None
    return executor


def submit_workers(plan: SweepPlan, parallel: ParallelOptions, *, report: bool, quiet: bool, echo: Echo) -> list[Any]:
    """Submit the workers (``parallel.workers``, default one per cell to run); return submitit's jobs.

    With ``submitit_local`` wait for them (a worker that failed leaves its message in the
    ``submitit`` folder's logs)."""
    launcher = parallel.launcher or "slurm"
    count = min(int(parallel.workers or len(plan.pending)), len(plan.pending))  # a task without a cell would idle
    folder = plan.output_dir / SUBMITIT_DIR
    local = launcher == "submitit_local"
    threads = max(1, (plan.config.num_threads or cpu_count()) // count) if local else None
    task_class = RequeueingSweepWorkerTask if (parallel.slurm or SlurmOptions()).requeue and not local else SweepWorkerTask
    task = task_class(plan.config, count, parallel.lease_seconds, threads, "finisher" if report else "none", quiet)
    executor = make_executor(folder, launcher, parallel.slurm, count, f"facetransfer-sweep-{plan.config.name}")
    jobs = executor.map_array(task, range(count))
    array_id = str(jobs[0].job_id).split("_")[0]
    kind = "local submitit" if local else "SLURM array"
    echo(f"submitted {count} workers as {kind} job {array_id} (logs: {folder}); "
         f"follow it with: facetransfer sweep --status {plan.output_dir}")
    if local:
        failures = []
        for index, job in enumerate(jobs):
            try:
                job.result()
            except Exception as err:  # submitit's FailedJobError / UncompletedJobError carry the worker's traceback
                failures.append(f"worker {index}/{count}: {str(err).strip().splitlines()[-1]}")
        missing = {c.key for c in plan.cells} - plan.table.finished_keys()
        if failures and missing:
            raise WorkersFailed(
                f"{len(failures)} of {count} workers failed ({'; '.join(failures)}) and {len(missing)} cell(s) have no "
                f"row; their logs are in {folder}; run the same command to resume"
            )
    return jobs


__all__ = ["RequeueingSweepWorkerTask", "SweepWorkerTask", "check_launcher", "make_executor", "submit_workers"]
