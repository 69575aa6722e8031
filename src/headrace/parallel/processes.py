"""The process backend of parallel ``map``: worker processes, for pure-Python work.

Workers are fresh interpreters (``sys.executable -c ...``), never a ``fork`` of a
parent that may be running threads, and they do not import the parent's ``__main__``:
scripts need no ``if __name__ == "__main__"`` guard. They start on a run's first
``next()`` and serve every element of that run. A run that ends cleanly hands them
back to its stage, which keeps them for its next run (``Warm`` in
:mod:`headrace.parallel.pool`); a run that ends with an error or Ctrl-C stops them.
``fn`` travels to them with cloudpickle, once per worker, so lambdas and closures
work; elements and results travel the same way, with numpy array data in shared
memory (see :mod:`headrace.parallel._transport`).

The consumer's thread does all the coordination: it pulls elements from the upstream,
sends each task (a run of elements, see :class:`~headrace.parallel._drive.Chunking`)
to the least-loaded worker and waits on the workers' pipes, so a worker that dies is
noticed the moment it dies (its pipe reads end-of-file). No thread is started in the
consumer's process.

>>> import headrace as hr
>>> list(hr.range(5).map(lambda x: x * x, workers=2, backend="process"))
[0, 1, 4, 9, 16]
"""

from __future__ import annotations

import contextlib
import os
import pickle
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, Pipe, wait
from pathlib import Path
from typing import Any, Final

from headrace.errors import WorkerError, annotate
from headrace.parallel import _stop
from headrace.parallel._drive import Done, Failed
from headrace.parallel._protocol import (
    CALL,
    FAILURE,
    FREE,
    INDEX,
    READY,
    RESULT,
    TASK,
    TASK_DONE,
    TIMED,
)
from headrace.parallel.threads import spans

__all__ = ["TASK_FLOOR_S", "ProcessPool", "pickled", "rebuild", "unpicklable"]

#: What a task costs on this backend that neither end can time: the worker waking
#: up on its pipe, and the consumer waking up on the result's (seconds).
TASK_FLOOR_S: Final = 60e-6

#: How long closing a run lets workers finish the call in hand before stopping them.
CLOSE_GRACE_S: Final = 0.2

#: Set to ``0`` to send everything through the pipes (for a small ``/dev/shm``), or
#: to a size in bytes: buffers from that size up go through shared memory.
SHARED_MEMORY_ENV: Final = "HEADRACE_SHARED_MEMORY"

#: What a worker runs (with ``-P``: no working directory on the path): the folder
#: headrace is imported from, then the serving loop on its pipe. The worker takes
#: the parent's ``sys.path`` from its setup message before it loads the function.
_BOOT: Final = (
    "import sys; sys.path.insert(0, sys.argv[2]); "
    "from headrace.parallel._worker import main; main(int(sys.argv[1]))"
)
_HOME: Final = str(Path(__file__).resolve().parents[2])

#: Names the interpreter for worker processes, where ``sys.executable`` is not a
#: plain Python (an embedding application).
PYTHON_ENV: Final = "HEADRACE_PYTHON"


def _python() -> str:
    """The interpreter that runs workers."""
    chosen = os.environ.get(PYTHON_ENV) or sys.executable
    if not chosen or (getattr(sys, "frozen", False) and not os.environ.get(PYTHON_ENV)):
        raise WorkerError(
            "the process backend needs a Python interpreter to start workers, and "
            f"sys.executable is {sys.executable!r}; set {PYTHON_ENV} to one that can "
            "import headrace"
        )
    return chosen


def _threshold() -> int | None:
    from headrace.parallel import _transport

    text = os.environ.get(SHARED_MEMORY_ENV, "").strip()
    if not text:
        return _transport.DEFAULT_THRESHOLD
    try:
        value = int(text)
    except ValueError:
        raise ValueError(
            f"{SHARED_MEMORY_ENV} must be 0 (off) or a size in bytes, got {text!r}"
        ) from None
    return value if value > 0 else None


def rebuild(body: bytes, label: str, index: int, place: str) -> BaseException:
    """The exception a worker sent (``_worker.failure``), noted with the stage, the
    element ``index`` (-1: none) and the worker's traceback (``place`` and its pid).
    An exception that cannot be rebuilt here becomes a :class:`WorkerError` naming it.
    """
    exc, (module, qualname, message, text, pid) = pickle.loads(body)
    error: BaseException | None = None
    if exc is not None:
        try:
            error = pickle.loads(exc)
        except Exception:
            error = None
    if error is None:
        error = WorkerError(f"{module}.{qualname}: {message}")
    annotate(error, label, index if index >= 0 else None)
    error.add_note(f"headrace: traceback in {place} {pid}:\n{text.rstrip()}")
    return error


def pickled(functions: object, label: str, backend: str, kept: object = None) -> bytes:
    """``functions`` pickled for the workers of ``backend`` (see
    :func:`headrace._pickling.dumps` for ``kept``), or the pickling error with a note
    naming the stage."""
    from headrace import _pickling

    try:
        return _pickling.dumps(functions, protocol=5, kept=kept)
    except Exception as error:
        workers = "Ray actors" if backend == "ray" else "worker processes"
        error.add_note(
            f"headrace: {label} could not send its function to {workers}; the {backend} "
            "backend needs functions that cloudpickle can pickle"
        )
        raise


def unpicklable(
    error: Exception, items: list[Any], first: int, label: str, backend: str
) -> Exception:
    """What to raise when the task of elements ``first``, ... did not pickle: the error
    of the element that does not, noted with its index (or ``error`` itself)."""
    from headrace._pickling import dumps

    culprit, offset = error, 0
    for offset, item in enumerate(items):  # noqa: B007 - used after the loop
        try:
            dumps(item, protocol=5)
        except Exception as single:
            culprit = single
            break
    else:
        offset = 0
    annotate(culprit, label, first + offset)
    culprit.add_note(f"headrace: elements sent to the {backend} backend must be picklable")
    return culprit


class ProcessPool:
    """The worker processes of one run, and the pipes to them."""

    def __init__(
        self,
        call: Callable[[int, Any], Any],
        workers: int,
        label: str,
        init: Callable[[], object] | None = None,
        fn: object = None,
    ) -> None:
        from headrace.parallel import _transport

        self.transport = _transport
        self.label = label
        self.threshold = _threshold()
        self.prefix = f"hr{os.getpid()}_{secrets.token_hex(3)}_"
        self.arena = _transport.Arena(f"{self.prefix}p", self.threshold)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.conns: list[Connection] = []
        #: The tasks each worker has in hand, oldest first: first index -> elements.
        self.owned: list[dict[int, int]] = []
        self.closed = False
        #: The process that started the workers: a forked child holds copies of the
        #: pipes, and must neither use them nor stop the workers (see :meth:`close`).
        self.owner = os.getpid()
        #: Set by the stage that keeps these workers: how many times it had been
        #: closed when this run took them.
        self.generation = 0
        #: Set when the thread this pool is driven from (a prefetch thread) must stop.
        self.stop = _stop.current()
        #: The user's function inside ``call``: a later run's function refers to the
        #: worker's copy of it (see :meth:`rebind`).
        self.fn = fn
        #: New tasks go to the first ``active`` workers (``workers="auto"``).
        self.active = workers
        # In one pickle: functions sent by value share their module's globals there,
        # so what worker_init sets, fn sees.
        payload = pickled((init, call, fn), label, "process")
        try:
            # All interpreters start at once; each reads its setup once it is up.
            for _ in range(workers):
                self._start()
            for number, conn in enumerate(self.conns):
                setup = (self.prefix, f"{self.prefix}w{number}", self.threshold, sys.path)
                try:
                    conn.send_bytes(pickle.dumps(setup, protocol=5))
                    conn.send_bytes(payload)
                except OSError:
                    raise self._died(number, starting=True) from None
            for number in range(workers):
                self._handshake(number)
        except BaseException:
            self.close()
            raise

    @property
    def idle(self) -> bool:
        """Whether every worker is alive (as far as is known) and has nothing in hand:
        the pool can serve another run."""
        return not self.closed and not any(self.owned) and os.getpid() == self.owner

    def drain(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for the workers to finish the tasks in hand, and drop
        their results; whether they all did (then the pool is idle)."""
        deadline = time.monotonic() + seconds
        while any(self.owned):
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                return False
            try:
                self.receive(left)
            except (WorkerError, _stop.Stopped):
                return False
        return True

    def rebind(self, call: Callable[[int, Any], Any], label: str) -> None:
        """Serve a new run, with its function, on these workers (kept from an earlier run).

        The user's function is not sent again: the run's call refers to the worker's
        copy, the one whose globals ``worker_init`` set up.
        """
        self.label = label
        self.stop = _stop.current()
        self.active = len(self.conns)
        payload = CALL + pickled(call, label, "process", kept=self.fn)
        for number, conn in enumerate(self.conns):
            try:
                conn.send_bytes(payload)
            except OSError:
                raise self._died(number, starting=True) from None
        for number in range(len(self.conns)):
            self._handshake(number)

    def _start(self) -> None:
        executable = _python()
        here, there = Pipe()
        try:
            process = subprocess.Popen(
                [
                    executable,
                    *subprocess._args_from_interpreter_flags(),  # type: ignore[attr-defined]
                    "-P",
                    "-c",
                    _BOOT,
                    str(there.fileno()),
                    _HOME,
                ],
                pass_fds=[there.fileno()],
                stdin=subprocess.DEVNULL,
                # Out of the terminal's foreground group: Ctrl-C reaches only this
                # process, which stops the workers itself.
                process_group=0,
            )
        except OSError as error:
            here.close()
            raise WorkerError(
                f"{self.label}: could not start a worker process with {executable!r}: {error}"
            ) from error
        finally:
            there.close()
        self.procs.append(process)
        self.conns.append(here)
        self.owned.append({})

    def _handshake(self, number: int) -> None:
        while True:
            try:
                frame = self.conns[number].recv_bytes()
            except (EOFError, OSError):
                raise self._died(number, starting=True) from None
            if frame[:1] != FREE:
                break
            self.arena.free(frame[1:].decode())
        if frame[:1] == FAILURE:
            raise self._rebuild(frame[1 + TIMED.size :], -1)
        if frame[:1] != READY:
            raise WorkerError(f"{self.label}: unexpected message from a worker process")

    def send(self, first: int, items: list[Any]) -> int:
        """Give the task of elements ``first``, ... to the worker with the fewest
        elements in hand; return the bytes it was packed into."""
        try:
            body = self.arena.pack(items)
        except Exception as error:
            raise unpicklable(error, items, first, self.label, "process") from None
        number = min(range(self.active), key=lambda n: sum(self.owned[n].values()))
        try:
            self.conns[number].send_bytes(TASK + INDEX.pack(first) + body)
        except OSError:
            raise self._died(number) from None
        self.owned[number][first] = len(items)
        return len(body)

    def activate(self, count: int) -> None:
        self.active = min(max(count, 1), len(self.conns))

    def receive(self, timeout: float | None = None) -> list[Done]:
        """Wait for finished tasks (none, after ``timeout`` seconds, if given).

        Raises :class:`WorkerError` as soon as a worker is found dead: its pipe
        reads end-of-file the moment the process is gone.
        """
        numbers = {id(conn): n for n, conn in enumerate(self.conns)}
        results: list[Done] = []
        dead: list[int] = []
        if self.stop is None:
            ready = wait(self.conns, timeout)
        else:
            deadline = None if timeout is None else time.monotonic() + timeout
            while not (ready := wait(self.conns, _stop.SLICE_S)):
                if self.stop.is_set():
                    raise _stop.Stopped(f"{self.label}: stopped while waiting for workers")
                if deadline is not None and time.monotonic() >= deadline:
                    break
        for conn in ready:
            assert isinstance(conn, Connection)
            number = numbers[id(conn)]
            try:
                frame = conn.recv_bytes()
            except (EOFError, OSError):
                dead.append(number)
                continue
            if frame[:1] == FREE:
                self.arena.free(frame[1:].decode())
            else:
                results.append(self._result(number, frame))
        if dead:
            # Results that arrived with the death are dropped with the run; their
            # segments are removed when the pool closes.
            raise self._died(dead[0])
        return results

    def _result(self, number: int, frame: bytes) -> Done:
        start = time.perf_counter()
        if frame[:1] != RESULT:
            raise WorkerError(f"{self.label}: unexpected message from a worker process")
        first, busy, overhead = TASK_DONE.unpack_from(frame, 1)
        count = self.owned[number].get(first, 0)
        self.owned[number].pop(first, None)
        (values, failures), segment = self.arena.unpack(frame[1 + TASK_DONE.size :])
        if segment is not None:
            with contextlib.suppress(OSError):  # a dead worker is reported by receive
                self.conns[number].send_bytes(FREE + segment.encode())
        if -1 in failures:  # the worker could not read the task's elements at all
            error = self._rebuild(failures[-1], -1)
            error.add_note(
                f"headrace: {self.label}: one of its input elements {first}-"
                f"{first + max(count, 1) - 1} (0-based), sent to a worker process "
                "together, could not be rebuilt there"
            )
            return first, [Failed(error)] + [None] * (count - 1), True, busy, 0.0, len(frame)
        for offset, body in failures.items():
            values[offset] = Failed(self._rebuild(body, first + offset))
        cost = overhead + time.perf_counter() - start
        return first, values, bool(failures), busy, cost, len(frame)

    def _rebuild(self, body: bytes, index: int) -> BaseException:
        return rebuild(body, self.label, index, "worker process")

    def _died(self, number: int, *, starting: bool = False) -> WorkerError:
        process = self.procs[number]
        try:
            code: int | None = process.wait(5.0)
        except subprocess.TimeoutExpired:
            code = None
        if code is None:
            how = "closed its pipe but is still running"
        elif code < 0:
            try:
                signame = signal.Signals(-code).name
            except ValueError:
                signame = "unknown signal"
            how = f"was killed by signal {-code} ({signame}"
            if -code == signal.SIGKILL:
                how += ", which is also what the kernel's out-of-memory killer sends"
            how += ")"
        else:
            how = f"exited with code {code}"
        # The worker runs its elements in the order it got them, but the results it
        # finished may not all have reached this side: any of these can be the one.
        owned = list(self.owned[number].items())
        if len(owned) == 1 and owned[0][1] == 1:
            holding = f" while working on input element {owned[0][0]} (0-based)"
        elif owned:
            holding = f" with input elements {spans(owned)} (0-based) sent to it and not returned"
        elif starting:
            holding = " while starting (is headrace importable by that interpreter?)"
        else:
            holding = " while idle"
        return WorkerError(
            f"{self.label}: worker process {process.pid} {how}{holding}; the run is stopped"
        )

    def close(self) -> None:
        """Stop every worker and remove every segment of this run; safe to repeat.

        A second Ctrl-C while waiting for the workers to leave still ends with every
        worker killed and every segment removed.
        """
        if self.closed:
            return
        self.closed = True
        if os.getpid() != self.owner:  # a fork's copy: the workers are the parent's
            for conn in self.conns:
                with contextlib.suppress(OSError):
                    conn.close()
            return
        try:
            for conn in self.conns:
                conn.close()  # a worker waiting for a task reads end-of-file and leaves
            self.arena.close()
            deadline = time.monotonic() + CLOSE_GRACE_S
            for process in self.procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(max(deadline - time.monotonic(), 0.0))
        finally:
            for process in self.procs:
                if process.poll() is None:
                    process.kill()
            for process in self.procs:
                process.wait()
            self.transport.remove_segments(self.prefix)
