"""Where stages run: in this process, in N local processes, or as Ray tasks.

Every executor takes ``(stage, given)`` pairs (``given``: the pool or calibration set a
stage needs, loaded by the driver) and calls ``done(stage, result)`` in the driver as
each finishes; results travel back by value, so workers need no shared filesystem.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..errors import CalibpruneError
from ..options import OptionError, literal
from ..results import StageOutcome
from .plan import Stage
from .stages import execute

Done = Callable[[Stage, StageOutcome], None]
EXECUTORS = ("local", "ray")

# torch's CPU kernels split their sums by thread, so the thread count moves a cell's last
# digits (and, through flipped near-tied scores, more): every stage runs at one fixed,
# recorded count, the spec's ``resources.threads``, whatever the machine or --workers.
# 1 is what every committed replication cell ran at.
DEFAULT_THREADS = 1


def stage_threads(resources: dict | None) -> int:
    threads = int((resources or {}).get("threads", DEFAULT_THREADS))
    if threads < 1:
        raise CalibpruneError(f"resources.threads {threads} must be >= 1")
    return threads


class LocalExecutor:
    """``workers=1``: stages one after another in this process. ``workers=N``: N spawned
    processes. Every stage runs at ``threads`` torch threads (see :data:`DEFAULT_THREADS`);
    ``workers x threads`` above the CPU count only slows a sweep down, it changes no result."""

    def __init__(self, workers: int = 1, scratch: str | None = None, threads: int = DEFAULT_THREADS):
        if workers < 1:
            raise OptionError("workers", f"{{workers}} {workers} must be >= 1")
        self.workers = workers
        self.scratch = scratch
        self.threads = threads
        self.pool = None

    @property
    def parallelism(self) -> int:
        return self.workers

    def run(self, jobs: Iterable[tuple[Stage, object]], done: Done) -> None:
        jobs = list(jobs)
        if self.workers == 1:
            for stage, given in jobs:
                done(stage, execute(stage.kind, stage.payload, given, self._scratch(stage), self.threads))
            return
        import concurrent.futures as cf
        import multiprocessing

        if self.pool is None:
            self.pool = cf.ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        futures = {
            self.pool.submit(execute, s.kind, s.payload, given, self._scratch(s), self.threads): s for s, given in jobs
        }
        for future in cf.as_completed(futures):
            done(futures[future], future.result())

    def _scratch(self, stage: Stage) -> str | None:
        return f"{self.scratch}/{stage.key}.generation" if self.scratch and stage.kind in ("pool", "calib") else None

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None


class RayExecutor:
    """Each stage a Ray task with the spec's resources (``num_cpus``, ``num_gpus``,
    ``memory``). ``address``: join a running cluster (``auto``); none starts a local Ray.
    A task whose node dies is retried by Ray (``max_retries``); application errors come
    back as failed results and are not retried."""

    def __init__(self, address: str | None = None, resources: dict | None = None, num_cpus: int | None = None):
        try:
            import ray
        except ImportError:
            raise OptionError("executor", "{executor=ray} needs the `ray` package: pip install 'ray>=2.9,<3'") from None
        self.ray = ray
        if not ray.is_initialized():
            options = {"address": address} if address else {"num_cpus": num_cpus, "include_dashboard": False}
            ray.init(log_to_driver=False, configure_logging=False, **options)
        resources = dict(resources or {})
        self.threads = stage_threads(resources)
        resources.pop("threads", None)
        self.remote = ray.remote(max_retries=3, **{"num_cpus": self.threads, **resources})(execute)
        self.refs: dict[str, object] = {}

    @property
    def parallelism(self) -> int:
        cpus = self.ray.cluster_resources().get("CPU", 1)
        return max(1, int(cpus // max(1, self.threads)))

    def run(self, jobs: Iterable[tuple[Stage, object]], done: Done) -> None:
        pending = {}
        for stage, given in jobs:
            if given is not None:  # one object-store copy per set, shared by every cell using it
                ref_key = stage.needs or stage.key
                if ref_key not in self.refs:
                    self.refs[ref_key] = self.ray.put(given)
                given = self.refs[ref_key]
            pending[self.remote.remote(stage.kind, stage.payload, given, None, self.threads)] = stage
        while pending:
            ready, _ = self.ray.wait(list(pending), num_returns=1)
            for ref in ready:
                stage = pending.pop(ref)
                try:
                    outcome = self.ray.get(ref)
                except Exception as exc:  # the task's node died more often than Ray retries it
                    outcome = StageOutcome.failure(f"{type(exc).__name__}: {exc}")
                done(stage, outcome)

    def close(self) -> None:
        self.refs.clear()


def make_executor(name: str, workers: int = 1, address: str | None = None, resources=None, scratch=None):
    if name == "local":
        return LocalExecutor(workers, scratch, stage_threads(resources))
    if name == "ray":
        return RayExecutor(address, resources)
    raise OptionError("executor", f"{{executor}} {literal(repr(name))} is unknown: use one of {', '.join(EXECUTORS)}")
