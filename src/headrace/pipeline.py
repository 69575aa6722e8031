"""``Pipeline``: an immutable, lazy, re-runnable description of a data stream.

A pipeline is a source followed by stages. Methods return new pipelines and never
change the one they are called on; nothing runs until iteration, and every ``iter()``
starts a fresh, independent run (one epoch).

>>> import headrace as hr
>>> evens = hr.range(10).filter(lambda x: x % 2 == 0)
>>> squares = evens.map(lambda x: x * x)
>>> squares
Pipeline(range(0, 10) -> filter(<lambda>) -> map(<lambda>))
>>> list(squares), list(squares)
([0, 4, 16, 36, 64], [0, 4, 16, 36, 64])
>>> [b.tolist() for b in squares.batch(2)]
[[0, 4], [16, 36], [64]]
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, TextIO, TypeGuard, TypeVar, overload

import numpy as np

from headrace._checks import check_seed
from headrace.engine.plan import Plan
from headrace.engine.stage import INFINITE, Stage
from headrace.parallel import ParallelMap, Prefetch, RandomMap
from headrace.parallel.threads import check_backend, pool_options
from headrace.policy import ErrorPolicy, OnError
from headrace.run import Run, start
from headrace.sharding import shard
from headrace.sources.basic import FromIterable
from headrace.stages.basic import (
    Enumerate,
    Filter,
    FlatMap,
    Map,
    Pipe,
    Scan,
    Skip,
    Starmap,
    Take,
    TakeWhile,
    Tap,
)
from headrace.stages.batching import Batch, Unbatch, collate, padded_batch_stage
from headrace.stages.bucketing import BucketByLength
from headrace.stages.caching import Cache
from headrace.stages.combine import Concat, Interleave, Repeat, Zip
from headrace.stages.coroutines import Coroutine, Step
from headrace.stages.parsing import Parse
from headrace.stages.permute import global_shuffle
from headrace.stages.shuffling import Shuffle
from headrace.stages.windows import Window

__all__ = ["Pipeline"]

T = TypeVar("T")
U = TypeVar("U")


class Pipeline(Plan[T]):
    """A source and a chain of stages; iterate it to run one epoch.

    Build pipelines with the source functions (:func:`headrace.range`,
    :func:`headrace.from_iterable`, :func:`headrace.text_lines`, ...) and chain the
    methods below. ``len(pipeline)`` works when the length follows from the source and
    stages, and raises ``TypeError`` when it cannot be known without running.
    """

    __slots__ = ()

    def with_stages(self, stages: Sequence[Stage]) -> Pipeline[Any]:
        """A pipeline with other ``stages`` and this one's seed."""
        return Pipeline(stages, seed=self.seed)

    def with_seed(self, seed: int) -> Pipeline[T]:
        """This pipeline with one seed from which every stage without its own derives one.

        Shuffles, ``files``/``image_folder`` with ``shuffle=True`` and ``random_map``
        given no ``seed=`` take a seed derived from this one and their place in the
        pipeline (nested pipelines included), so one number makes the whole pipeline
        reproducible: the same output on every run of an epoch, with any worker count,
        on any machine. Stages given a seed of their own keep it. Stages added after
        this call derive theirs too.

        >>> import headrace as hr
        >>> noisy = hr.range(6).shuffle(4).random_map(lambda x, rng: x + rng.random() // 1)
        >>> a = noisy.with_seed(3)
        >>> list(a.iter(epoch=0)) == list(a.iter(epoch=0)) != list(a.iter(epoch=1))
        True
        """
        if check_seed(seed) is None:
            raise ValueError("with_seed needs a non-negative int seed, not None")
        return Pipeline(self._stages, seed=seed)

    def _then(self, stage: Stage) -> Pipeline[Any]:
        return Pipeline((*self._stages, stage), seed=self._seed)

    # -- running --------------------------------------------------------------------

    def iter(
        self,
        *,
        epoch: int | None = None,
        stats: bool = True,
        state: Mapping[str, Any] | None = None,
        progress: bool | TextIO = False,
    ) -> Run[T]:
        """Start a run: an iterator over one epoch that can be closed early.

        Args:
            epoch: the epoch number seeded stages use; by default each call on this
                pipeline takes the next number, starting at 0 (so an extra ``iter()``
                to peek at an element shifts later epochs; pass ``epoch`` to pin it).
            stats: count every stage and sample where the time goes (see
                :meth:`Run.stats` and :meth:`Run.report`): on by default, cheap
                enough to leave on (a few percent on the overhead benchmark);
                ``False`` turns it off entirely (no thread, no signal, no count).
            progress: show a progress line (elements or batches, rate, elapsed time,
                and the percentage and time left when the length is known) on
                standard error, or on the stream given; drawn by a thread from the
                run's count, so it costs nothing per element.
            state: what :meth:`Run.state` gave (a JSON round trip is fine): the run
                goes on right after the last element the saved run handed out, in the
                saved run's epoch, and later plain ``iter()`` calls take the epochs
                after it. Built-in stages go on from their saved state without
                replaying the epoch; a pipeline with a user generator stage replays
                it up to that point (see :meth:`Run.state`).

        >>> import headrace as hr
        >>> with hr.range(5).iter() as run:
        ...     next(run), next(run)
        (0, 1)
        """
        return start(self, epoch=epoch, stats=stats, state=state, progress=progress)

    def __iter__(self) -> Run[T]:
        return self.iter()

    def close(self) -> None:
        """Stop the worker processes (and Ray actors) this pipeline's parallel stages
        keep between runs.

        They would stop anyway when the pipeline is dropped or the program exits; a
        later run starts new ones. Runs in progress keep theirs until they end.

        >>> import headrace as hr
        >>> squares = hr.range(4).map(lambda x: x * x, workers=2, backend="process")
        >>> list(squares), list(squares)  # the second run reuses the workers
        ([0, 1, 4, 9], [0, 1, 4, 9])
        >>> squares.close()
        """
        for stage in self.stages:
            close = getattr(stage, "close_workers", None)
            if close is not None:
                close()

    # -- element-wise ---------------------------------------------------------------

    def map(
        self,
        fn: Callable[[T], U],
        *,
        workers: int | Literal["auto"] = 0,
        backend: str = "thread",
        ordered: bool = True,
        buffer_size: int | None = None,
        chunk_size: int | None = None,
        worker_init: Callable[[], object] | None = None,
        on_error: OnError = "raise",
        catch: type[Exception] | tuple[type[Exception], ...] | None = None,
        resources: Mapping[str, float] | None = None,
    ) -> Pipeline[U]:
        """Apply ``fn`` to every element, inline or on a pool of workers.

        Args:
            fn: the function.
            workers: ``0`` (default) calls ``fn`` inline, fused with neighbouring
                maps and filters; ``N >= 1`` runs it on ``N`` workers; ``"auto"``
                starts one worker per usable core and, as the run goes, uses the
                count (all, half, one, or none: calls on the consumer's thread) whose
                measured throughput is best, the fewest within 5%; ``run.stats()``
                shows the choice (``auto``) and the next run starts from it. Consecutive
                ``map``/``random_map`` stages with the same workers, backend and
                options (and ``on_error="raise"``) run on the same workers, both
                calls in the same task: an element makes one trip for all of them.
            backend: ``"thread"`` (default): a thread pool, for functions that release
                the GIL (decoding, I/O, numpy). ``"process"``: worker processes, for
                pure-Python work; ``fn`` may be a lambda or closure (it travels by
                cloudpickle), elements and results must pickle, and numpy arrays in
                them travel through shared memory. The worker processes start with the
                first run and are kept for the next ones (the next epoch starts in
                milliseconds); they stop when the pipeline is dropped, at exit, or on
                :meth:`close`. ``"ray"``: actors of a Ray cluster (``pip install
                'headrace[ray]'``), the one ``ray.init(address=...)`` connected the
                program to, or a local one started on the first run (logged); ``fn``,
                elements and results travel as for processes, through Ray's object
                store, and the actors are kept between runs as worker processes
                are (a run with no room on the cluster stops the idle actors other
                stages keep).
            ordered: with workers, yield results in input order (default) or, with
                ``False``, as each is ready.
            buffer_size: with workers, the most elements in flight: taken from the
                upstream and not yet yielded. Memory stays at about that many
                elements however slow the consumer is. Default: two tasks per
                worker (``2 * workers * chunk``).
            chunk_size: with workers, how many consecutive elements go to a worker
                in one task. ``None`` (default) adapts it as the run goes: one
                element a task for work of a millisecond or more, up to thousands
                for a cheap function, so that handing elements over stays under
                about 5% of the work. Order, ``buffer_size``, error notes (the exact
                element) and ``random_map``'s draws do not depend on it.
            worker_init: with workers, a function called with no arguments once in
                each worker (thread or process) before its first element: imports,
                loading a model, opening a connection. A kept worker process runs
                it once for all the runs it serves.
            on_error: what to do when ``fn`` raises on an element. ``"raise"``
                (default) stops the run, the error noted with the stage and element;
                ``"skip"`` drops the element, counts it (with the exception's type and
                message) in the stage's statistics and logs a summary at the end of
                the run; a file path also appends each one there as a JSON line. It
                applies to every ``Exception`` (as tf.data's ``ignore_errors``), never
                to ``KeyboardInterrupt``, ``SystemExit``, ``MemoryError`` or a worker
                process that died.
            catch: with ``on_error``, the exception types it applies to (a type or a
                tuple): ``catch=(hr.ParseError, OSError)`` drops bad data and lets
                a bug in ``fn`` (a ``KeyError``, say) stop the run.
            resources: with ``backend="ray"``, what each actor asks of the cluster:
                ``{"num_cpus": 2, "num_gpus": 0.5, "memory": 4 << 30}`` (default one
                CPU each).

        >>> import headrace as hr
        >>> list(hr.range(3).map(str))
        ['0', '1', '2']
        >>> list(hr.range(5).map(lambda x: x * 10, workers=2))
        [0, 10, 20, 30, 40]
        >>> list(hr.range(5).map(lambda x: x * 10, workers=2, backend="process"))
        [0, 10, 20, 30, 40]
        >>> def number(text):
        ...     if not text.isdigit():
        ...         raise hr.ParseError(f"not a number: {text!r}")
        ...     return int(text)
        >>> list(hr.from_iterable(["1", "x", "3"]).map(number, on_error="skip"))
        [1, 3]
        """
        if isinstance(workers, str) and workers != "auto":
            raise TypeError(f"workers must be an int >= 0 or 'auto', got {workers!r}")
        if workers != "auto":
            workers, _, _, _ = pool_options(
                workers, ordered, buffer_size, chunk_size, minimum_workers=0
            )
        backend = check_backend(backend)
        if resources is not None and workers == 0:
            raise ValueError("resources= is for the workers of backend='ray': pass workers=N")
        if worker_init is not None and workers == 0:
            raise ValueError("worker_init needs workers: pass workers=N as well")
        if workers == 0:
            if ErrorPolicy(on_error).mode == "raise" and catch is None:
                return self._then(Map(fn))
            return self._then(ParallelMap(fn, workers=0, on_error=on_error, catch=catch))
        return self._then(
            ParallelMap(
                fn,
                workers=workers,
                backend=backend,
                ordered=ordered,
                buffer_size=buffer_size,
                chunk_size=chunk_size,
                worker_init=worker_init,
                on_error=on_error,
                catch=catch,
                resources=resources,
            )
        )

    def random_map(
        self,
        fn: Callable[[T, np.random.Generator], U],
        *,
        seed: int | None = None,
        workers: int | Literal["auto"] = 0,
        backend: str = "thread",
        ordered: bool = True,
        buffer_size: int | None = None,
        chunk_size: int | None = None,
        worker_init: Callable[[], object] | None = None,
        on_error: OnError = "raise",
        catch: type[Exception] | tuple[type[Exception], ...] | None = None,
        resources: Mapping[str, float] | None = None,
    ) -> Pipeline[U]:
        """Apply a random function ``fn(element, rng)``, the same with any worker count.

        ``rng`` is a ``numpy.random.Generator`` seeded from ``seed``, the epoch and the
        element's position in this stage's input, so augmentation draws the same
        values with 0, 1 or N workers, in any completion order, and anew each epoch.
        Making a generator costs some microseconds per element: use this for work
        that costs more (image augmentation), not for trivial functions.

        Args:
            fn: called as ``fn(element, rng)``.
            seed: non-negative int; the stage's draws follow from it. ``None``: the
                seed :meth:`with_seed` derives for it (a run of a pipeline with no
                seed then raises ``ValueError``).
            workers, backend, ordered, buffer_size, chunk_size, worker_init, on_error,
            catch, resources: as for :meth:`map`.

        >>> import headrace as hr
        >>> flips = hr.range(4).random_map(lambda x, rng: -x if rng.random() < 0.5 else x, seed=3)
        >>> list(flips.iter(epoch=0)) == list(flips.iter(epoch=0))
        True
        """
        return self._then(
            RandomMap(
                fn,
                seed=seed,
                workers=workers,
                backend=backend,
                ordered=ordered,
                buffer_size=buffer_size,
                chunk_size=chunk_size,
                worker_init=worker_init,
                on_error=on_error,
                catch=catch,
                resources=resources,
            )
        )

    def prefetch(self, buffer_size: int = 2) -> Pipeline[T]:
        """Keep up to ``buffer_size`` elements ready, produced on a background thread.

        Everything before this stage runs on that thread while the consumer works on
        the previous elements; the thread starts on the first ``next()`` and is stopped
        and joined when the run ends, however it ends.

        >>> import headrace as hr
        >>> list(hr.range(5).map(lambda x: x + 1).prefetch(2))
        [1, 2, 3, 4, 5]
        """
        return self._then(Prefetch(buffer_size))

    def starmap(self, fn: Callable[..., U]) -> Pipeline[U]:
        """Apply ``fn`` to each element unpacked, ``fn(*element)``, as ``itertools.starmap``.

        This is how tf.data's ``map`` treats tuple elements; headrace's :meth:`map`
        passes the element whole, and ``starmap`` unpacks it.

        >>> import headrace as hr
        >>> list(hr.from_iterable([(2, 5), (3, 2)]).starmap(pow))
        [32, 9]
        """
        return self._then(Starmap(fn))

    @overload
    def filter(self, fn: Callable[[T], TypeGuard[U]]) -> Pipeline[U]: ...
    @overload
    def filter(self, fn: Callable[[T], object]) -> Pipeline[T]: ...

    def filter(self, fn: Callable[[T], object]) -> Pipeline[Any]:
        """Keep the elements for which ``fn`` returns a true value.

        A predicate typed as returning ``TypeGuard[X]`` narrows the element type to
        ``X`` for type checkers, as ``filter(is_record)`` does after a parsing ``map``.

        >>> import headrace as hr
        >>> list(hr.range(6).filter(lambda x: x % 3 == 0))
        [0, 3]
        """
        return self._then(Filter(fn))

    def parse(
        self,
        pattern: str | re.Pattern[str],
        *,
        on_error: OnError = "raise",
        search: bool = False,
    ) -> Pipeline[dict[str, Any]]:
        r"""Turn each text element into a dict of the named groups of ``pattern``.

        The whole element must match, unless ``search=True``. An element that does not
        match (or is not a ``str``) follows ``on_error``: ``"raise"`` (default) raises
        :class:`headrace.ParseError` naming the stage and element; ``"skip"`` drops it,
        counts it and logs a summary; a file path also appends it there as a JSON line.

        >>> import headrace as hr
        >>> logs = hr.from_iterable(["10:01 WARN disk", "10:02 INFO ok"])
        >>> [r["level"] for r in logs.parse(r"(?P<time>\S+) (?P<level>\w+) (?P<text>.*)")]
        ['WARN', 'INFO']
        """
        return self._then(Parse(pattern, on_error=on_error, search=search))

    def tap(self, fn: Callable[[T], object]) -> Pipeline[T]:
        """Call ``fn(element)`` for its side effect and pass the element on unchanged.

        >>> import headrace as hr
        >>> seen = []
        >>> list(hr.range(3).tap(seen.append)) == seen
        True
        """
        return self._then(Tap(fn))

    def flat_map(self, fn: Callable[[T], Iterable[U]]) -> Pipeline[U]:
        """Replace each element by the elements of the iterable ``fn`` returns.

        >>> import headrace as hr
        >>> list(hr.from_iterable(["a b", "c"]).flat_map(str.split))
        ['a', 'b', 'c']
        """
        return self._then(FlatMap(fn))

    def scan(self, fn: Callable[[U, T], U], initial: U) -> Pipeline[U]:
        """Running reduction: yields ``state = fn(state, element)`` for each element.

        >>> import headrace as hr
        >>> list(hr.from_iterable([5, 4, 2]).scan(lambda s, x: s + x, 0))
        [5, 9, 11]
        """
        return self._then(Scan(fn, initial))

    def enumerate(self, start: int = 0) -> Pipeline[tuple[int, T]]:
        """Pair each element with its position.

        >>> import headrace as hr
        >>> list(hr.from_iterable("ab").enumerate())
        [(0, 'a'), (1, 'b')]
        """
        return self._then(Enumerate(start))

    # -- slicing --------------------------------------------------------------------

    def take(self, count: int) -> Pipeline[T]:
        """The first ``count`` elements; ends an endless pipeline.

        >>> import headrace as hr
        >>> list(hr.range(3).repeat().take(7))
        [0, 1, 2, 0, 1, 2, 0]
        """
        return self._then(Take(count))

    def skip(self, count: int) -> Pipeline[T]:
        """Everything after the first ``count`` elements.

        >>> import headrace as hr
        >>> list(hr.range(5).skip(2))
        [2, 3, 4]
        """
        return self._then(Skip(count))

    def take_while(self, fn: Callable[[T], object]) -> Pipeline[T]:
        """Elements up to, not including, the first for which ``fn`` is false.

        >>> import headrace as hr
        >>> list(hr.range(10).take_while(lambda x: x < 3))
        [0, 1, 2]
        """
        return self._then(TakeWhile(fn, drop=False))

    def drop_while(self, fn: Callable[[T], object]) -> Pipeline[T]:
        """Elements from the first for which ``fn`` is false onwards.

        >>> import headrace as hr
        >>> list(hr.range(5).drop_while(lambda x: x < 3))
        [3, 4]
        """
        return self._then(TakeWhile(fn, drop=True))

    # -- grouping -------------------------------------------------------------------

    def batch(
        self,
        size: int,
        *,
        drop_remainder: bool = False,
        collate: Callable[[list[Any]], Any] | None = collate,
    ) -> Pipeline[Any]:
        """Group ``size`` consecutive elements into a numpy batch.

        Tuples and dicts keep their structure, numbers/arrays/lists stack into arrays
        (see :func:`headrace.stages.collate`). ``collate=None`` yields plain lists.

        >>> import headrace as hr
        >>> xs, ys = next(iter(hr.range(4).map(lambda i: (i, i * i)).batch(4)))
        >>> xs.tolist(), ys.tolist()
        ([0, 1, 2, 3], [0, 1, 4, 9])
        """
        return self._then(Batch(size, drop_remainder=drop_remainder, collate=collate))

    def padded_batch(
        self,
        size: int,
        *,
        padded_shapes: Any = None,
        padding_value: Any = 0,
        drop_remainder: bool = False,
    ) -> Pipeline[Any]:
        """Like :meth:`batch`, padding variable-size arrays to a common shape.

        >>> import headrace as hr
        >>> next(iter(hr.from_iterable([[1], [2, 3]]).padded_batch(2))).tolist()
        [[1, 0], [2, 3]]
        """
        return self._then(padded_batch_stage(size, padded_shapes, padding_value, drop_remainder))

    def bucket_by_length(
        self,
        length_fn: Callable[[T], int],
        boundaries: Sequence[int],
        batch_sizes: Sequence[int],
        *,
        padding_value: Any = 0,
        drop_remainder: bool = False,
    ) -> Pipeline[Any]:
        """Padded batches of elements of similar length: tf.data's
        ``bucket_by_sequence_length``.

        Element ``x`` goes to bucket ``i`` where ``boundaries[i - 1] <= length_fn(x) <
        boundaries[i]`` (the first bucket from 0, the last with no upper end); a bucket
        that holds ``batch_sizes[i]`` elements becomes one batch, padded with
        ``padding_value`` to its longest element as :meth:`padded_batch` pads. At the
        end, the buckets that are not full are handed out too (shortest lengths first),
        unless ``drop_remainder``. ``run.state()`` resumes exactly: the buckets are
        saved as places in the input, which a resumed run reads again from the oldest
        element still in a bucket.

        >>> import headrace as hr
        >>> tokens = hr.from_iterable([[1], [2, 3, 4], [5], [6, 7, 8, 9], [10, 11]])
        >>> [b.tolist() for b in tokens.bucket_by_length(len, [3], [2, 2])]
        [[[1], [5]], [[2, 3, 4, 0], [6, 7, 8, 9]], [[10, 11]]]
        """
        return self._then(
            BucketByLength(
                length_fn,
                boundaries,
                batch_sizes,
                padding_value=padding_value,
                drop_remainder=drop_remainder,
            )
        )

    def unbatch(self) -> Pipeline[Any]:
        """Split batches back into elements.

        >>> import headrace as hr
        >>> [int(x) for x in hr.range(5).batch(2).unbatch()]
        [0, 1, 2, 3, 4]
        """
        return self._then(Unbatch())

    def window(
        self, size: int, *, shift: int | None = None, drop_remainder: bool = False
    ) -> Pipeline[tuple[T, ...]]:
        """Tuples of ``size`` elements starting every ``shift`` (default ``size``).

        >>> import headrace as hr
        >>> list(hr.range(5).window(3, shift=1, drop_remainder=True))
        [(0, 1, 2), (1, 2, 3), (2, 3, 4)]
        """
        return self._then(Window(size, shift=shift, drop_remainder=drop_remainder))

    # -- order ----------------------------------------------------------------------

    def global_shuffle(self, *, seed: int | None = None) -> Pipeline[T]:
        """Read a random-access source in a new pseudo-random order every epoch, no buffer.

        Call it right after ``range(...)`` or ``from_iterable(x)``, where ``x`` is a
        sequence (list, tuple, range, ...) or a numpy array; add other stages after it.
        Every element comes once per epoch, in the order of a permutation drawn from
        ``seed`` and the epoch (and the repetition, inside ``repeat()``). Unlike
        ``shuffle(buffer_size)``, any element can come at any position, memory does not
        grow with the length, and the first element comes at once. ``seed=None`` takes
        the pipeline's seed (:meth:`with_seed`), else draws fresh entropy every run.
        Raises ``ValueError`` if stages come before it or the source cannot be read by
        index, and ``TypeError`` for a seed that is not an int.

        >>> import headrace as hr
        >>> shuffled = hr.range(10).global_shuffle(seed=0)
        >>> first, second = list(shuffled), list(shuffled)
        >>> sorted(first) == list(range(10)), first != second
        (True, True)
        """
        return global_shuffle(self, seed=seed)

    def shuffle(self, buffer_size: int, *, seed: int | None = None) -> Pipeline[T]:
        """Shuffle through a buffer of ``buffer_size`` elements, anew every epoch.

        With a ``seed`` every run is reproducible: epoch ``n`` of this pipeline always
        gives the same order, and different epochs give different orders.

        >>> import headrace as hr
        >>> shuffled = hr.range(10).shuffle(10, seed=0)
        >>> first, second = list(shuffled), list(shuffled)
        >>> sorted(first) == list(range(10)), first != second
        (True, True)
        >>> list(shuffled.iter(epoch=0)) == first
        True
        """
        return self._then(Shuffle(buffer_size, seed=seed))

    def repeat(self, count: int | None = None) -> Pipeline[T]:
        """Run everything before this stage ``count`` times (``None``: forever).

        Each repetition restarts the upstream stages, so a shuffle upstream draws a
        new order every time.

        >>> import headrace as hr
        >>> list(hr.range(2).repeat(3))
        [0, 1, 0, 1, 0, 1]
        """
        return self._then(Repeat(count))

    # -- combining ------------------------------------------------------------------

    def zip(self, *others: Iterable[Any], strict: bool = False) -> Pipeline[tuple[Any, ...]]:
        """Tuples of this pipeline's elements and the others', in step.

        Stops at the shortest input; ``strict=True`` raises ``ValueError`` instead
        when the inputs differ in length.

        >>> import headrace as hr
        >>> list(hr.range(3).zip("ab"))
        [(0, 'a'), (1, 'b')]
        """
        zipped = Zip((self, *(as_pipeline(o) for o in others)), strict=strict)
        return Pipeline((zipped,), seed=self._seed)

    def concat(self, *others: Iterable[Any]) -> Pipeline[Any]:
        """This pipeline's elements followed by each of the others'.

        >>> import headrace as hr
        >>> list(hr.range(2).concat([7, 8]))
        [0, 1, 7, 8]
        """
        return Pipeline((Concat((self, *(as_pipeline(o) for o in others))),), seed=self._seed)

    def interleave(
        self, fn: Callable[[T], Iterable[U]], *, cycle_length: int = 4, block_length: int = 1
    ) -> Pipeline[U]:
        """Mix the iterables ``fn`` returns, ``block_length`` at a time from each.

        Opens ``fn(x)`` for ``cycle_length`` elements at once and takes from them in
        turn; when one ends, the next element takes its place (tf.data's rule).
        ``fn`` may return any iterable or a :class:`Pipeline`, such as
        ``hr.text_lines(path)`` to interleave lines of several files.

        >>> import headrace as hr
        >>> list(hr.from_iterable(["ab", "xyz"]).interleave(list, cycle_length=2))
        ['a', 'x', 'b', 'y', 'z']
        """
        return self._then(Interleave(fn, cycle_length=cycle_length, block_length=block_length))

    # -- extension and reuse --------------------------------------------------------

    def pipe(self, fn: Callable[..., Iterable[U]], *args: Any, **kwargs: Any) -> Pipeline[U]:
        """Insert a plain generator function ``fn(iterable, *args, **kwargs)``.

        >>> import headrace as hr
        >>> def negated(iterable):
        ...     return (-i for i in iterable)
        >>> list(hr.range(3).pipe(negated))
        [0, -1, -2]
        """
        return self._then(Pipe(fn, args, kwargs))

    def coroutine(self, fn: Callable[..., Step] | Step, *args: Any, **kwargs: Any) -> Pipeline[Any]:
        """Insert a two-``yield`` coroutine step (seed 000's style).

        ``fn(*args, **kwargs)`` makes a fresh step for every run; see
        :mod:`headrace.stages.coroutines` for the protocol.

        >>> import headrace as hr
        >>> def double():
        ...     while True:
        ...         x = yield
        ...         yield 2 * x
        >>> list(hr.range(3).coroutine(double))
        [0, 2, 4]
        """
        return self._then(Coroutine(fn, *args, **kwargs))

    def cache(self, path: str | os.PathLike[str] | None = None) -> Pipeline[T]:
        """Keep the elements of the first complete run (in memory, or in ``path``).

        >>> import headrace as hr
        >>> cached = hr.range(3).cache()
        >>> list(cached) == list(cached) == [0, 1, 2]
        True
        """
        if self.known_length() == INFINITE:
            raise ValueError(
                f"cannot cache the endless {self!r}: the cache would grow without bound; "
                "cache before repeat() or after take()"
            )
        return self._then(Cache(path))

    # -- sharing and training ------------------------------------------------------

    def shard(
        self,
        num_shards: int | None = None,
        index: int | None = None,
        *,
        equal: str | None = None,
    ) -> Pipeline[T]:
        """Share ``index`` of ``num_shards``: the shares together yield every element once.

        Without the numbers, the share is this process's, read at every run: the rank
        (``torch.distributed`` when torch is in use, Ray Train's context in a Ray Train
        worker, else ``RANK``/``WORLD_SIZE``) times
        the DataLoader worker, when inside one. ``equal="drop"`` or ``"pad"`` gives every
        share the same number of elements (of batches, when batching follows), so that
        distributed ranks take equal steps: ``"drop"`` stops each at the shortest
        share's count, ``"pad"`` repeats a shorter share's first elements; both need
        lengths known without running.

        Each share runs as little of the others' work as the pipeline allows: a file
        source with enough files reads only its files, any other source is shared out
        element by element right after it (or after the last stage that needs the
        whole stream, such as ``take`` or ``enumerate``). Stages before that point
        must give the same order in every share: an unseeded ``shuffle`` there is an
        error. See :func:`headrace.sharding.shard`.

        >>> import headrace as hr
        >>> [list(hr.range(7).shard(3, i)) for i in range(3)]
        [[0, 3, 6], [1, 4], [2, 5]]
        """
        return shard(self, num_shards, index, equal=equal)

    def to_torch(self, *, device: Any = None, pin_memory: bool = False) -> Any:
        """This pipeline as a PyTorch ``IterableDataset`` of tensors; needs torch.

        See :func:`headrace.torch.to_torch`: tensors share memory with the numpy
        batches, every ``iter()`` is a fresh run, and inside a ``DataLoader`` with
        ``num_workers=N`` each worker runs its own share.
        """
        from headrace.torch import to_torch

        return to_torch(self, device=device, pin_memory=pin_memory)

    def to_keras(self) -> Any:
        """This pipeline of batches as input for Keras 3's ``fit``, ``evaluate``, ``predict``.

        ``model.fit(train.to_keras(), validation_data=val.to_keras(), epochs=5)``: steps
        per epoch come from ``len()`` when it is known, every epoch is a fresh run. See
        :func:`headrace.keras.to_keras`.
        """
        from headrace.keras import to_keras

        return to_keras(self)

    def to_jax(self, *, prefetch: int = 1, device: Any = None) -> Any:
        """An iterable of this pipeline's batches with their arrays on a JAX device.

        The next ``prefetch`` batches are put on the device ahead of use. See
        :func:`headrace.jax.to_jax`.
        """
        from headrace.jax import to_jax

        return to_jax(self, prefetch=prefetch, device=device)

    def to_tf_dataset(self, *, output_signature: Any = None) -> Any:
        """This pipeline as a ``tf.data.Dataset``, its signature read from the first elements.

        No ``set_shape`` needed; tf.data's own operations compose with it. See
        :func:`headrace.tf.to_tf_dataset`.
        """
        from headrace.tf import to_tf_dataset

        return to_tf_dataset(self, output_signature=output_signature)


def as_pipeline(value: Iterable[Any]) -> Pipeline[Any]:
    """``value`` itself if it is a pipeline, else a pipeline over its elements."""
    if isinstance(value, Pipeline):
        return value
    return Pipeline((FromIterable(value),))
