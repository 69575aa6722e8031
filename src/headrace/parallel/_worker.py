"""The loop a process-backend worker runs.

A worker is a fresh interpreter started with ``python -P -c`` (see
:mod:`headrace.parallel.processes`) in a process group of its own, so Ctrl-C reaches
only the parent, which decides how its workers stop. It never imports the parent's
``__main__``, so scripts need no ``if __name__ == "__main__"`` guard. It reads its
setup (the parent's ``sys.path`` among it) and the stage's function from its pipe,
then serves tasks until the pipe closes (the run ended, or the parent is gone). A
second thread sends the results, so a worker never stops reading tasks because its
pipe to the parent is full; a third notices when the parent has died while the
worker is busy, removes the run's segments and ends the worker.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import sys
import threading
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, Final

from headrace._pickling import dumps, loads
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
    call_many,
)
from headrace.parallel._transport import Arena, remove_segments

__all__ = ["main"]

_OWN = "headrace.parallel."

#: How often a worker checks that its parent is alive.
ORPHAN_CHECK_S: Final = 0.5
#: How long a worker that stops lets its sender thread send what is queued.
SEND_GRACE_S: Final = 1.0


def main(fd: int) -> None:
    """Serve the run on the pipe ``fd`` until it closes."""
    # Processes that fn starts must not hold the pipe open: its end-of-file is how
    # the parent learns that this worker has died.
    os.set_inheritable(fd, False)
    parent = os.getppid()
    conn = Connection(fd)
    try:
        run_prefix, prefix, threshold, path = pickle.loads(conn.recv_bytes())
        sys.path[:] = [entry for entry in path if isinstance(entry, str)]
        payload = conn.recv_bytes()
    except (EOFError, OSError):
        return
    except BaseException as error:
        error.add_note("headrace: the worker process could not read its setup")
        with contextlib.suppress(OSError):
            conn.send_bytes(FAILURE + TIMED.pack(-1, 0.0) + failure(error))
        return
    threading.Thread(target=_watch, args=(parent, run_prefix), daemon=True).start()
    try:
        init, call, fn = pickle.loads(payload)
    except BaseException as error:
        _refuse(conn, error, "the worker process could not load the stage's function")
        return
    if init is not None:
        try:
            init()
        except BaseException as error:
            _refuse(conn, error, "the stage's worker_init function failed in the worker")
            return
    try:
        conn.send_bytes(READY)
    except OSError:
        return
    arena = Arena(prefix, threshold)
    outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
    sender = threading.Thread(target=_send_all, args=(conn, outbox), daemon=True)
    sender.start()
    try:
        while True:
            try:
                frame = conn.recv_bytes()
            except (EOFError, OSError):
                # The parent closed the run, or died (the pipe closes before the parent
                # is gone from the process table, so its death cannot be told apart
                # here). Either way the run is over: removing its segments is safe,
                # and after a death nobody else would.
                remove_segments(run_prefix)
                return
            kind = frame[:1]
            if kind == FREE:
                arena.free(frame[1:].decode())
                continue
            if kind == CALL:  # a new run of a kept worker: its call, around our fn
                try:
                    call = loads(frame[1:], kept=fn)
                except BaseException as error:
                    _refuse(outbox, error, "the worker process could not load the stage's function")
                    return
                outbox.put(READY)
                continue
            if kind != TASK:
                return
            (first,) = INDEX.unpack_from(frame, 1)
            outbox.put(serve(call, arena, first, frame[1 + INDEX.size :], outbox))
    finally:
        # Results still queued are unwanted once the run stops, but a refusal to load
        # a run's function must reach the parent: give the sender a moment. It is a
        # daemon thread, and the parent removes any segment left behind.
        outbox.put(None)
        sender.join(SEND_GRACE_S)
        arena.close()


def _refuse(
    out: Connection | queue.SimpleQueue[bytes | None], error: BaseException, note: str
) -> None:
    """Answer a run's start with ``error``, noted."""
    error.add_note(f"headrace: {note}")
    message = FAILURE + TIMED.pack(-1, 0.0) + failure(error)
    if isinstance(out, Connection):
        with contextlib.suppress(OSError):
            out.send_bytes(message)
    else:
        out.put(message)


def serve(
    call: Callable[[int, Any], Any],
    arena: Arena,
    first: int,
    body: bytes,
    outbox: queue.SimpleQueue[bytes | None],
) -> bytes:
    """Run one task and return its result frame."""
    clock = time.perf_counter
    start = clock()
    try:
        items, segment = arena.unpack(body)
    except BaseException as error:
        # Which element failed is not known here: -1 stands for the whole task.
        return _result(arena, first, [], {-1: failure(error)}, 0.0, clock() - start)
    if segment is not None:
        outbox.put(FREE + segment.encode())
    begin = clock()
    values, failed = call_many(call, first, items)
    end = clock()
    del items
    failures = {} if failed is None else {k: failure(e) for k, e in failed.items()}
    frame = _result(arena, first, values, failures, end - begin, begin - start)
    return frame


def _result(
    arena: Arena,
    first: int,
    values: list[Any],
    failures: dict[int, bytes],
    busy: float,
    overhead: float,
) -> bytes:
    """The frame of a finished task; a value that does not pickle becomes its failure."""
    start = time.perf_counter()
    try:
        body = arena.pack((values, failures))
    except Exception:
        for offset, value in enumerate(values):
            if offset in failures:
                continue
            try:
                dumps(value, protocol=5)
            except Exception as error:
                error.add_note(
                    "headrace: the result could not be sent back from the worker process "
                    "(results of the process backend must be picklable)"
                )
                failures[offset] = failure(error)
                values[offset] = None
        body = arena.pack((values, failures))
    overhead += time.perf_counter() - start
    return RESULT + TASK_DONE.pack(first, busy, overhead) + body


def _watch(parent: int, run_prefix: str) -> None:
    """End this worker, mid-call too, once its parent has died."""
    while os.getppid() == parent:
        time.sleep(ORPHAN_CHECK_S)
    remove_segments(run_prefix)
    os._exit(1)


def _send_all(conn: Connection, outbox: queue.SimpleQueue[bytes | None]) -> None:
    while (message := outbox.get()) is not None:
        try:
            conn.send_bytes(message)
        except OSError:  # the parent is gone or closed the run
            return


def failure(error: BaseException) -> bytes:
    """The exception, pickled if it can be, with its formatted traceback."""
    # The frames of this loop and of headrace's call wrappers say nothing to the user.
    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_globals.get("__name__", "").startswith(_OWN):
        tb = tb.tb_next
    shown = traceback.TracebackException(type(error), error, tb)
    # headrace's own notes travel with the exception (a joined stage's, naming it).
    notes = [n for n in shown.__notes__ or () if not str(n).startswith("headrace: ")]
    shown.__notes__ = notes or None
    text = "".join(shown.format())
    exc: bytes | None = None
    try:
        data = dumps(error, protocol=5)
        pickle.loads(data)  # an exception that pickles may still fail to rebuild
        exc = data
    except Exception:
        pass
    detail = (type(error).__module__, type(error).__qualname__, str(error), text, os.getpid())
    return pickle.dumps((exc, detail), protocol=5)
