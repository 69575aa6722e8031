"""Ray beyond the map backend: a Ray Data dataset as a source, and ``shard()`` inside
Ray Train workers, on a real local Ray cluster that the module starts and stops."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pytest
import ray
import ray.data
import ray.train
from ray.train import ScalingConfig
from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

import headrace as hr

pytestmark = pytest.mark.timeout(240)
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def cluster(local_ray: Any) -> Any:
    """The module's local cluster (``local_ray`` in tests/conftest.py)."""
    return local_ray


@pytest.fixture
def ordered() -> Any:
    context = ray.data.DataContext.get_current()
    before = context.execution_options.preserve_order
    context.execution_options.preserve_order = True
    try:
        yield context
    finally:
        context.execution_options.preserve_order = before


def test_a_ray_dataset_feeds_a_pipeline_as_rows_or_batches(cluster: Any, ordered: Any) -> None:
    dataset = ray.data.range(100).map_batches(lambda b: {"id": b["id"], "sq": b["id"] ** 2})
    rows = list(hr.read_ray_dataset(dataset).map(lambda r: int(r["sq"])))
    assert rows == [i * i for i in range(100)]
    batches = list(hr.read_ray_dataset(dataset, batch_size=32))
    assert [len(b["id"]) for b in batches] == [32, 32, 32, 4]
    assert np.concatenate([b["sq"] for b in batches]).tolist() == [i * i for i in range(100)]


def test_a_ray_dataset_run_resumes_when_its_order_is_kept(cluster: Any, ordered: Any) -> None:
    pipeline = hr.read_ray_dataset(ray.data.range(50)).map(lambda r: int(r["id"]))
    with pipeline.iter() as run:
        taken = [next(run) for _ in range(7)]
        state = run.state()
    assert taken + list(pipeline.iter(state=state)) == list(range(50))


def test_an_unordered_dataset_has_no_state(cluster: Any) -> None:
    context = ray.data.DataContext.get_current()
    assert not context.execution_options.preserve_order
    pipeline = hr.read_ray_dataset(ray.data.range(10))
    with pipeline.iter() as run:
        next(run)
        with pytest.raises(ValueError, match="does not preserve its order"):
            run.state()
    with pytest.raises(TypeError, match=r"takes a ray\.data\.Dataset or a DataIterator"):
        hr.read_ray_dataset([1, 2, 3])


def test_shard_takes_the_rank_of_a_ray_train_worker(cluster: Any, tmp_path: Path) -> None:
    def loop(config: dict[str, Any]) -> None:
        rank = ray.train.get_context().get_world_rank()
        shares = list(hr.range(10).shard())
        (Path(config["out"]) / f"{rank}.json").write_text(json.dumps(shares))

    trainer = DataParallelTrainer(
        loop,
        train_loop_config={"out": str(tmp_path)},
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
    )
    # Ray Train's controller takes SIGINT for itself and leaves its handler behind:
    # the tests of Ctrl-C that follow need Python's own back.
    handler = signal.getsignal(signal.SIGINT)
    try:
        trainer.fit()
    finally:
        signal.signal(signal.SIGINT, handler)
    got = [json.loads((tmp_path / f"{rank}.json").read_text()) for rank in (0, 1)]
    assert got == [[0, 2, 4, 6, 8], [1, 3, 5, 7, 9]]


def test_outside_ray_train_the_share_is_the_whole(cluster: Any) -> None:
    assert list(hr.range(4).shard()) == [0, 1, 2, 3]
    time.sleep(0)
