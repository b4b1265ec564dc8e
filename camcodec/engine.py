"""Where independent pieces of work run: in this process, or on Dask distributed (local or a cluster).

An engine has three verbs, ``submit``, ``as_completed`` and ``close``, so that another engine could be
added beside Dask. Tasks are plain functions of picklable arguments (paths and frame ranges, never
frames). Dask is an optional dependency (``pip install camcodec[cluster]``), imported only here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from camcodec.errors import InputError

log = logging.getLogger(__name__)

#: Seconds to wait for a scheduler (``--cluster``) before giving up with one line.
CONNECT_TIMEOUT_S = 10
#: Times a task is tried again after the worker that ran it died (a killed or crashed process).
ALLOWED_FAILURES = 3


class Engine(Protocol):
    def submit(self, fn: Callable[..., Any], *args: Any, key: str, resources: dict[str, float] | None = None) -> Any:
        """Run ``fn(*args)``; ``key`` names the task, ``resources`` what a worker must have for it."""

    def as_completed(self, futures: Iterable[Any]) -> Iterator[Any]:
        """The futures as they finish; ``future.result()`` gives the value or raises the task's error."""

    def close(self) -> None: ...


class Deferred:
    """A task of the inline engine: run when its result is first asked for."""

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]):
        self.fn, self.args = fn, args
        self.done = False
        self.value: Any = None

    def result(self) -> Any:
        if not self.done:
            self.value, self.done = self.fn(*self.args), True
        return self.value


class InlineEngine:
    """Runs each task in this process, one at a time, as its result is taken from ``as_completed``: no
    engine started (one segment, or no --workers), and whatever the caller does with each result (save
    a row, advance a bar) happens between tasks, as it would on a cluster."""

    def submit(
        self, fn: Callable[..., Any], *args: Any, key: str, resources: dict[str, float] | None = None
    ) -> Deferred:
        return Deferred(fn, args)

    def as_completed(self, futures: Iterable[Deferred]) -> Iterator[Deferred]:
        return iter(list(futures))

    def close(self) -> None:
        pass


class DaskEngine:
    """Dask distributed: a local cluster of worker processes, or the scheduler at ``address``.

    A local cluster has ``workers`` processes of one thread each and an explicit memory limit each (the
    machine's memory shared out); a task whose worker dies is run again on another one (up to
    ``ALLOWED_FAILURES`` times).
    """

    def __init__(
        self,
        workers: int | None = None,
        address: str | None = None,
        *,
        processes: bool = True,
        connect_timeout: float = CONNECT_TIMEOUT_S,
    ):
        """``processes=False``: the workers are threads of this process (for tests of the logic)."""
        try:
            import dask
            from distributed import Client, LocalCluster
        except ImportError:
            raise InputError("--workers and --cluster need Dask: pip install 'camcodec[cluster]'") from None
        # Process-wide settings this engine changes are given back by close(): Dask's configuration, the
        # level of its logger and the environment, so that an application embedding camcodec is left as it was.
        self._config: Any = dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES})
        # Dask logs its start and stop at INFO; shown with camcodec -v, as camcodec's own INFO lines are.
        quiet = logging.getLogger().getEffectiveLevel() > logging.INFO
        self._dask_log_level = logging.getLogger("distributed").level
        logging.getLogger("distributed").setLevel(logging.WARNING if quiet else logging.INFO)
        self.cluster = None
        # Dask's nannies set OMP_NUM_THREADS=1 and MALLOC_TRIM_THRESHOLD_ in this process's environment to
        # pass them to the workers they spawn; the caller's environment is given back (see close()).
        self._environ = dict(os.environ)
        try:
            if address is not None:
                self.client = Client(address, timeout=f"{connect_timeout}s")
            else:
                count = workers or 1
                self.cluster = LocalCluster(
                    n_workers=count,
                    threads_per_worker=1,
                    processes=processes,
                    memory_limit=_memory_per_worker(count),
                    dashboard_address=None,
                    silence_logs=logging.WARNING if quiet else logging.INFO,
                )
                self.client = Client(self.cluster)
        except (OSError, TimeoutError) as exc:
            self.close()
            where = address or "a local cluster"
            raise InputError(f"cannot reach the Dask scheduler at {where} ({' '.join(str(exc).split())})") from None
        self._restore_environ()
        log.info("Dask: %d workers (%s)", len(self.client.scheduler_info()["workers"]), address or "local")

    def worker_resources(self) -> list[dict[str, float]]:
        """Each worker's declared resources (``dask worker --resources GPU=1``)."""
        return [info.get("resources", {}) for info in self.client.scheduler_info()["workers"].values()]

    def submit(self, fn: Callable[..., Any], *args: Any, key: str, resources: dict[str, float] | None = None) -> Any:
        return self.client.submit(fn, *args, key=key, pure=False, resources=resources)

    def as_completed(self, futures: Iterable[Any]) -> Iterator[Any]:
        from distributed import as_completed

        return iter(as_completed(list(futures)))

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            client.close()
        if self.cluster is not None:
            self.cluster.close()
        self._restore_environ()
        if self._config is not None:
            self._config.__exit__(None, None, None)  # dask.config.set used as a context, left here
            self._config = None
            logging.getLogger("distributed").setLevel(self._dask_log_level)

    def _restore_environ(self) -> None:
        if os.environ != self._environ:
            os.environ.clear()
            os.environ.update(self._environ)


def make_engine(workers: int | None, address: str | None) -> Engine:
    """Dask when ``workers`` or ``address`` is given, else in this process."""
    if workers is not None and address is not None:
        raise InputError("--workers starts a local cluster and --cluster uses a running one: give one of them")
    if workers is None and address is None:
        return InlineEngine()
    return DaskEngine(workers, address)


def _memory_per_worker(workers: int) -> int:
    """The machine's memory shared out between the workers, in bytes."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    return int(total // workers)
