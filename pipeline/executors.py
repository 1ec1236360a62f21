"""Where ingest shard tasks run: a local process pool, a Dask cluster, or any `concurrent.futures`
executor the caller brings (Ray, submitit, a thread pool in tests).

Why the `concurrent.futures` interface and nothing of our own: a shard task
(`pipeline.shardtask.run_shard_task`) is a pure function of its arguments that publishes one
shard, so the scheduling engine only has to call it somewhere and hand back the small result.
Every engine worth using already does that (and restarts, retries and places work better than a
home-made one would); the ingest needs only `submit(fn, *args) -> future` with `result()`/`done()`,
and to know which exceptions mean "the worker process died" (to retry the task alone, so a decoder
crash is pinned on one clip: `pipeline.shardtask`).

Local workers are spawned processes that die with the ingest even when it is SIGKILLed while the
pool is still starting (`_DyingSpawnProcess`): the "die with the parent" request is made as the
child's first act, before the pool's own start-up code, followed by a check that the parent is
still the one that started it (the request is lost if the parent died just before it).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import multiprocessing.context
import os
import signal
from concurrent.futures.process import BrokenProcessPool

#: Exception class names that mean "the process running the task died" in the engines we know:
#: the local pool, Dask (after its own `allowed-failures` retries), Ray, submitit.
WORKER_DEATH_NAMES = {
    "BrokenProcessPool",
    "KilledWorker",
    "WorkerCrashedError",
    "UncompletedJobError",
    "CommClosedError",
}


def die_with_parent(expected_parent: int | None, sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send `sig` to this process when its parent exits (Linux PR_SET_PDEATHSIG),
    then act now if the parent is already gone (the request only covers a parent alive at the
    time of the call): exit for SIGKILL, else raise `sig` here. True when the request is in place.

    Ingest workers use SIGKILL; training ranks (`launch.runguard`) SIGTERM, their preemption signal."""
    try:
        import ctypes

        if ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(sig), 0, 0, 0) != 0:  # PR_SET_PDEATHSIG
            return False
    except (OSError, AttributeError):
        return False
    if expected_parent is not None and os.getppid() != expected_parent:
        if sig == signal.SIGKILL:
            os._exit(1)
        os.kill(os.getpid(), sig)
    return True


class _DyingSpawnProcess(multiprocessing.context.SpawnProcess):
    """A spawned process whose first act is `die_with_parent`: before the pool's worker loop and
    its initialiser, so a parent killed during pool start-up leaves nothing behind."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._voxface_parent = os.getpid()

    def run(self):
        die_with_parent(self._voxface_parent)
        super().run()


class _DyingSpawnContext(multiprocessing.context.SpawnContext):
    Process = _DyingSpawnProcess


def _no_op() -> int:
    return os.getpid()


class LocalProcessExecutor:
    """`--executor local`: a ProcessPoolExecutor of spawned, parent-bound workers, rebuilt after
    a worker death (a broken pool refuses further work)."""

    name = "local"

    def __init__(self, workers: int):
        self.workers = max(1, int(workers))
        self.capacity = self.workers
        self._pool = self._start()

    def _start(self) -> cf.ProcessPoolExecutor:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        pool = cf.ProcessPoolExecutor(max_workers=self.workers, mp_context=_DyingSpawnContext())
        try:
            pool.submit(_no_op).result()
        except BrokenProcessPool:
            pool.shutdown(wait=False, cancel_futures=True)
            raise WorkersCannotStart(
                "the extraction worker processes die on start-up. Spawned workers re-import the "
                "caller's __main__: run `python -m pipeline.ingest ...`, or call run_ingest from a "
                "script file under `if __name__ == '__main__':` (not from stdin); then re-run the "
                "same command to continue"
            ) from None
        return pool

    def submit(self, fn, *args) -> cf.Future:
        return self._pool.submit(fn, *args)

    def after_worker_death(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = self._start()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class WorkersCannotStart(RuntimeError):
    """The engine cannot run even a no-op task: an environment problem, not bad input."""


class DaskExecutor:
    """`--executor dask`: tasks go to a `dask.distributed` cluster through `Client.get_executor()`
    (a `concurrent.futures.Executor`). Without `--scheduler` a `LocalCluster` on 127.0.0.1 with
    `workers` single-threaded worker processes is started and stopped with the run.

    Dask reschedules a task whose worker died (up to `distributed.scheduler.allowed-failures`),
    so a killed worker costs a re-run of its shard task; after that it raises `KilledWorker`, and
    the ingest retries the task alone like any other worker death. The output folder must be on
    storage every worker can write (shard tasks publish their shards themselves)."""

    name = "dask"

    def __init__(self, workers: int, scheduler: str | None = None, processes: bool = True):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise WorkersCannotStart(
                "--executor dask needs dask.distributed: pip install 'voxface[dask]' (or dask[distributed])"
            ) from None
        self._cluster = None
        if scheduler:
            try:
                self._client = Client(scheduler, timeout="30s")
            except (OSError, TimeoutError) as err:
                raise WorkersCannotStart(f"cannot reach the Dask scheduler {scheduler}: {err}") from None
        else:
            self._cluster = LocalCluster(
                n_workers=max(1, int(workers)),
                threads_per_worker=1,
                processes=processes,
                host="127.0.0.1",
                dashboard_address=None,
            )
            self._client = Client(self._cluster)
        # shard tasks run one per process (pipeline.shardtask): capacity is worker processes
        self.capacity = max(1, len(self._client.nthreads()))
        self.workers = self.capacity
        self._executor = self._client.get_executor(pure=False)

    @property
    def client(self):
        return self._client

    def submit(self, fn, *args) -> cf.Future:
        return self._executor.submit(fn, *args)

    def after_worker_death(self) -> None:
        pass  # the cluster replaces its workers itself (nanny)

    def close(self) -> None:
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()


class ForeignExecutor:
    """Wraps an executor the caller built (Ray adapter, submitit, a thread pool): the caller owns
    its life cycle; `capacity` is how many shard tasks to keep in flight."""

    name = "custom"

    def __init__(self, executor, capacity: int):
        self._executor = executor
        self.capacity = self.workers = max(1, int(capacity))

    def submit(self, fn, *args):
        return self._executor.submit(fn, *args)

    def after_worker_death(self) -> None:
        pass

    def close(self) -> None:
        pass


def is_worker_death(err: BaseException) -> bool:
    return any(cls.__name__ in WORKER_DEATH_NAMES for cls in type(err).__mro__)


def make_executor(kind: str, workers: int, scheduler: str | None = None):
    if kind == "local":
        return LocalProcessExecutor(workers)
    if kind == "dask":
        return DaskExecutor(workers, scheduler)
    raise ValueError(f"unknown executor {kind!r}; expected local or dask")
