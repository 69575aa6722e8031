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

from headrace._pickling import dumps
from headrace.parallel._protocol import FAILURE, FREE, INDEX, READY, RESULT, TASK, TIMED
from headrace.parallel._transport import Arena, remove_segments

__all__ = ["main"]

_OWN = "headrace.parallel."

#: How often a worker checks that its parent is alive.
ORPHAN_CHECK_S: Final = 0.5


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
        call: Callable[[int, Any], Any] = pickle.loads(conn.recv_bytes())
    except (EOFError, OSError):
        return
    except BaseException as error:
        error.add_note("headrace: the worker process could not load the stage's function")
        with contextlib.suppress(OSError):
            conn.send_bytes(FAILURE + TIMED.pack(-1, 0.0) + failure(error))
        return
    threading.Thread(target=_watch, args=(parent, run_prefix), daemon=True).start()
    try:
        conn.send_bytes(READY)
    except OSError:
        return
    arena = Arena(prefix, threshold)
    outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
    threading.Thread(target=_send_all, args=(conn, outbox), daemon=True).start()
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
            if kind != TASK:
                return
            (index,) = INDEX.unpack_from(frame, 1)
            start = time.perf_counter()
            try:
                item, segment = arena.unpack(frame[1 + INDEX.size :])
                if segment is not None:
                    outbox.put(FREE + segment.encode())
                result = call(index, item)
            except BaseException as error:
                busy = time.perf_counter() - start
                outbox.put(FAILURE + TIMED.pack(index, busy) + failure(error))
                continue
            busy = time.perf_counter() - start
            try:
                message = RESULT + TIMED.pack(index, busy) + arena.pack(result)
            except Exception as error:
                error.add_note(
                    "headrace: the result could not be sent back from the worker process "
                    "(results of the process backend must be picklable)"
                )
                message = FAILURE + TIMED.pack(index, busy) + failure(error)
            outbox.put(message)
    finally:
        # Results still queued are unwanted once the run stops; the sender is a daemon
        # thread, and the parent removes any segment left behind.
        outbox.put(None)
        arena.close()


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
    text = "".join(traceback.format_exception(type(error), error, tb))
    exc: bytes | None = None
    try:
        data = dumps(error, protocol=5)
        pickle.loads(data)  # an exception that pickles may still fail to rebuild
        exc = data
    except Exception:
        pass
    detail = (type(error).__module__, type(error).__qualname__, str(error), text, os.getpid())
    return pickle.dumps((exc, detail), protocol=5)
