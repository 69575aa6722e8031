"""``backend="ray"`` across two nodes: a Ray cluster of two nodes on this machine
(``ray.cluster_utils.Cluster``), one CPU each, so that the two actors of a stage run
on different nodes; then one node is removed in the middle of a run.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import cloudpickle
import pytest
import ray
from ray.cluster_utils import Cluster

import headrace as hr
from headrace.errors import WorkerError

pytestmark = pytest.mark.timeout(180)
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(autouse=True)
def no_runs_left_behind() -> None:
    """In place of the folder's check: the cluster is checked as it shuts down."""


@pytest.fixture
def two_nodes(ray_processes: Any) -> Any:
    before = ray_processes()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    node = cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    try:
        yield cluster, node
    finally:
        ray.shutdown()
        cluster.shutdown()
        deadline = time.monotonic() + 30
        while (left := ray_processes() - before) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not left, f"Ray processes left running: {sorted(left)}"


def node_of(x: int) -> tuple[int, str]:
    time.sleep(0.02)
    return x, ray.get_runtime_context().get_node_id()


def test_a_stage_runs_on_actors_of_both_nodes(two_nodes: Any) -> None:
    got = list(hr.range(40).map(node_of, workers=2, backend="ray"))
    assert [x for x, _ in got] == list(range(40))
    assert len({node for _, node in got}) == 2


def test_a_node_lost_in_a_run_is_a_named_worker_error(two_nodes: Any) -> None:
    cluster, node = two_nodes
    start = time.monotonic()

    def train() -> None:
        with hr.range(10_000).map(node_of, workers=2, backend="ray").iter() as run:
            for x, _ in run:
                if x == 20:
                    cluster.remove_node(node)

    with pytest.raises(WorkerError, match=r"Ray actor \d \(process \d+\) died"):
        train()
    assert time.monotonic() - start < 120
