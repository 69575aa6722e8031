"""Seed 000's two-``yield`` coroutines: ``GeneratorPipeline`` and ``Pipeline.coroutine``."""

from __future__ import annotations

import pytest

import headrace as hr

# -- the seed's steps and its original class, kept as written -----------------------


def add(n):
    while True:
        x = yield
        yield x + n


def scale(k):
    while True:
        x = yield
        yield x * k


def pair_with_label(label):
    while True:
        x = yield
        yield (label, x)


class OriginalGeneratorPipeline:
    """Seed 000's class, verbatim: the reference the headrace version must match."""

    def __init__(self, source, *steps):
        self.source = source
        self.steps = list(steps)

    def __iter__(self):
        return self

    def __next__(self):
        return self.next()

    def next(self):
        batch = next(self.source)
        self.send_none()
        transformed = self.send(batch)
        return transformed

    def send_none(self):
        for step in self.steps:
            step.send(None)

    def send(self, batch):
        x = batch
        for generator in self.steps:
            x = generator.send(x)
        return x


def make_steps():
    return add(1), scale(10), pair_with_label("y")


# -- GeneratorPipeline --------------------------------------------------------------


def test_generator_pipeline_applies_the_steps_in_order():
    pipeline = hr.GeneratorPipeline(iter(range(5)), add(1), scale(10))

    # (x + 1) * 10, not x * 10 + 1: the order of the steps matters.
    assert list(pipeline) == [10, 20, 30, 40, 50]


def test_generator_pipeline_matches_the_original_class():
    source = [3, 1, 4, 1, 5, 9, 2, 6]

    ours = list(hr.GeneratorPipeline(iter(source), *make_steps()))
    original = list(OriginalGeneratorPipeline(iter(source), *make_steps()))

    assert ours == original == [("y", (x + 1) * 10) for x in source]


def test_generator_pipeline_takes_a_generator_source_like_the_seed():
    def dataset(batches):
        for i in range(batches):
            yield [i, i], [0, 1]

    def rescale():
        while True:
            x, y = yield
            yield [v / 2 for v in x], y

    pipeline = hr.GeneratorPipeline(dataset(3), rescale())

    assert [x for x, _ in pipeline] == [[0.0, 0.0], [0.5, 0.5], [1.0, 1.0]]


def test_generator_pipeline_is_an_iterator():
    pipeline = hr.GeneratorPipeline(iter([1, 2, 3]), add(0))

    assert iter(pipeline) is pipeline
    assert next(pipeline) == 1
    assert pipeline.next() == 2  # the seed's spelling
    assert next(pipeline) == 3
    with pytest.raises(StopIteration):
        next(pipeline)


def test_generator_pipeline_in_a_for_loop_resumes_where_next_left_off():
    pipeline = hr.GeneratorPipeline(iter(range(4)), scale(2))
    first = pipeline.next()

    rest = list(pipeline)

    assert (first, rest) == (0, [2, 4, 6])


def test_send_none_and_send_by_hand_work_like_the_original():
    ours = hr.GeneratorPipeline(iter(()), *make_steps())
    original = OriginalGeneratorPipeline(iter(()), *make_steps())

    for value in [7, -2, 0]:
        assert ours.send_none() is None
        original.send_none()
        assert ours.send(value) == original.send(value) == ("y", (value + 1) * 10)


def test_send_without_send_none_fails_like_the_original():
    # A fresh generator must receive None first; the seed's class does not hide that.
    ours = hr.GeneratorPipeline(iter(()), add(1))

    with pytest.raises(TypeError, match="non-None value"):
        ours.send(5)


def test_generator_pipeline_exposes_source_steps_and_a_pipeline():
    steps = make_steps()
    source = iter([1])
    pipeline = hr.GeneratorPipeline(source, *steps)

    assert pipeline.source is source
    assert pipeline.steps == list(steps)
    assert isinstance(pipeline.pipeline, hr.Pipeline)
    assert len(pipeline.pipeline.stages) == 1 + len(steps)


def test_generator_pipeline_ends_when_a_step_returns():
    def first_three():
        for _ in range(3):
            x = yield
            yield x

    pipeline = hr.GeneratorPipeline(iter(range(10)), first_three(), add(100))

    assert list(pipeline) == [100, 101, 102]


def test_generator_pipeline_close_closes_its_steps():
    closed = []

    def step(name):
        try:
            while True:
                x = yield
                yield x
        finally:
            closed.append(name)

    pipeline = hr.GeneratorPipeline(iter(range(10)), step("a"), step("b"))
    assert next(pipeline) == 0

    pipeline.close()

    assert sorted(closed) == ["a", "b"]
    with pytest.raises(StopIteration):
        next(pipeline)


# -- Pipeline.coroutine -------------------------------------------------------------


def test_coroutine_stage_equals_applying_the_steps():
    pipeline = hr.range(5).coroutine(add, 1).coroutine(scale, k=10)

    assert list(pipeline) == [(x + 1) * 10 for x in range(5)]


def test_coroutine_with_a_function_is_re_runnable_with_fresh_state():
    def running_total():
        total = 0
        while True:
            x = yield
            total += x
            yield total

    pipeline = hr.range(1, 5).coroutine(running_total)

    assert list(pipeline) == [1, 3, 6, 10]
    assert list(pipeline) == [1, 3, 6, 10]  # a fresh step, not the old total


def test_coroutine_function_is_called_once_per_run():
    calls = []

    def counted(n):
        calls.append(n)
        return add(n)

    pipeline = hr.range(3).coroutine(counted, 5)
    assert calls == []

    assert list(pipeline) == [5, 6, 7]
    assert list(pipeline) == [5, 6, 7]
    assert calls == [5, 5]


def test_coroutine_with_a_generator_object_runs_once_then_refuses():
    pipeline = hr.range(3).coroutine(add(1))

    assert list(pipeline) == [1, 2, 3]
    with pytest.raises(RuntimeError, match="generator object"):
        list(pipeline)


def test_coroutine_step_that_returns_ends_the_stream():
    def until_negative():
        while True:
            x = yield
            if x < 0:
                return
            yield x

    pipeline = hr.from_iterable([3, 2, -1, 5, 6]).coroutine(until_negative)

    assert list(pipeline) == [3, 2]


def test_coroutine_function_returning_a_non_generator_is_refused():
    pipeline = hr.range(3).coroutine(lambda: [1, 2, 3])

    with pytest.raises(TypeError, match="not a generator"):
        list(pipeline)


def test_coroutine_refuses_arguments_with_a_generator_object():
    with pytest.raises(TypeError, match="generator"):
        hr.range(3).coroutine(add(1), 2)


def test_coroutine_stage_is_named_after_the_function():
    pipeline = hr.range(3).coroutine(scale, 2)

    assert "coroutine(scale)" in repr(pipeline)


def test_coroutine_stage_is_lazy():
    seen = []

    def recording():
        while True:
            x = yield
            seen.append(x)
            yield x

    with hr.range(100).coroutine(recording).iter() as run:
        assert next(run) == 0
        assert next(run) == 1

    assert seen == [0, 1]
