"""The README's training example, as written there, on CSV files pandas writes: the
columns come typed without ``dtype=``, and a PyTorch net trains on them."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import headrace as hr
from headrace.sources.csv.infer import INFER_ROWS

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_training_code() -> str:
    """The Python block of the README's training section."""
    text = README.read_text()
    section = text.split("## Training with Keras, PyTorch, JAX and TensorFlow", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found, "the README's training section has no Python block"
    return found.group(1)


def write_files(folder: Path, second: int = 500) -> None:
    """Two training files (700 and ``second`` rows) and a validation file."""
    rng = np.random.default_rng(0)
    for name, rows in (("train-0.csv", 700), ("train-1.csv", second), ("val.csv", 300)):
        age = rng.integers(18, 90, rows)
        income = rng.normal(50_000, 9_000, rows).round(2)
        visits = rng.integers(0, 30, rows)
        label = (income / 10_000 + visits / 5 + age / 30 > 9).astype(np.int64)
        frame = pd.DataFrame({"age": age, "income": income, "visits": visits, "label": label})
        frame.to_csv(folder / name, index=False)


def test_the_readme_training_example_reads_typed_columns_and_trains(tmp_path, monkeypatch):
    write_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    code = readme_training_code()
    # The lines that build the pipelines, up to the first use of a framework.
    setup = code.split("\nmodel.fit(", 1)[0]
    assert 'read_csv("train-*.csv", batch_size=256)' in setup  # no dtype=
    namespace: dict[str, object] = {"hr": hr, "np": np}
    exec(compile(setup, str(README), "exec"), namespace)
    train = namespace["train"]
    assert isinstance(train, hr.Pipeline)
    x, y = next(iter(train))
    assert (x.dtype, x.shape, y.dtype, y.shape) == (np.float32, (256, 3), np.float32, (256,))

    # The README's PyTorch loop, with a net, a loss and an optimizer step around it.
    loop = re.search(r"for x, y in train\.to_torch\(\):.*?\n\n", code, re.DOTALL)
    assert loop, "the README's training block has no PyTorch loop"
    torch.manual_seed(0)
    net = nn.Sequential(nn.BatchNorm1d(3), nn.Linear(3, 1), nn.Flatten(0))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    losses: list[float] = []

    def loss_fn(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = nn.functional.binary_cross_entropy_with_logits(output, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        return loss

    namespace.update(net=net, loss_fn=loss_fn)
    for _ in range(5):
        exec(compile(loop.group(0), str(README), "exec"), namespace)
    assert len(losses) == 5 * 5  # 700 and 500 rows: 3 and 2 batches of up to 256
    assert np.mean(losses[-5:]) < np.mean(losses[:5])


def test_a_later_text_value_in_a_numeric_column_stops_the_readme_pipeline(tmp_path, monkeypatch):
    write_files(tmp_path, second=INFER_ROWS + 500)  # past the rows types are inferred from
    with open(tmp_path / "train-1.csv", "a") as out:
        out.write("n/a,1.5,3,0\n")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"hr": hr, "np": np}
    exec(compile(readme_training_code().split("\nmodel.fit(", 1)[0], "README", "exec"), namespace)
    with pytest.raises(
        hr.ParseError,
        match=rf"train-1\.csv row {INFER_ROWS + 501}: column 'age': cannot convert 'n/a'",
    ):
        list(namespace["train"])  # type: ignore[call-overload]
