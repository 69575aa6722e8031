"""The loop a process-backend worker runs.

A worker is a fresh interpreter started with ``python -c`` (see
:mod:`headrace.parallel.processes`); it never imports the parent's ``__main__``, so
scripts need no ``if __name__ == "__main__"`` guard. It reads its setup and the
stage's function from its pipe, then serves tasks until the pipe closes (the run
ended, or the parent is gone). It ignores SIGINT: Ctrl-C goes to the whole
foreground process group, and the parent decides how its workers stop. A second
thread sends the results, so a worker never stops reading tasks because its pipe to
the parent is full.
"""

from __future__ import annotations

import os
import pickle
import queue
import signal
import threading
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import cloudpickle

from headrace.parallel._protocol import FAILURE, FREE, INDEX, READY, RESULT, TASK, TIMED
from headrace.parallel._transport import Arena

__all__ = ["main"]

_OWN = "headrace.parallel."


def main(fd: int) -> None:
    """Serve the run on the pipe ``fd`` until it closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(fd)
    try:
        prefix, threshold = pickle.loads(conn.recv_bytes())
        call: Callable[[int, Any], Any] = pickle.loads(conn.recv_bytes())
    except (EOFError, OSError):
        return
    except BaseException as error:
        error.add_note("headrace: the worker process could not load the stage's function")
        conn.send_bytes(FAILURE + TIMED.pack(-1, 0.0) + failure(error))
        return
    conn.send_bytes(READY)
    arena = Arena(prefix, threshold)
    outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
    threading.Thread(target=_send_all, args=(conn, outbox), daemon=True).start()
    try:
        while True:
            try:
                frame = conn.recv_bytes()
            except (EOFError, OSError):
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
        data: bytes = cloudpickle.dumps(error, protocol=5)
        pickle.loads(data)  # an exception that pickles may still fail to rebuild
        exc = data
    except Exception:
        pass
    detail = (type(error).__module__, type(error).__qualname__, str(error), text, os.getpid())
    return pickle.dumps((exc, detail), protocol=5)
