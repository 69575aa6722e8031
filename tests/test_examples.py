"""The seed examples run as scripts, in a small configuration, and assert their outputs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(
    name: str, *args: str, keras_backend: str = "torch", python: tuple[str, ...] = ()
) -> str:
    completed = subprocess.run(
        [sys.executable, *python, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "KERAS_BACKEND": keras_backend},
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


@pytest.mark.timeout(150)
def test_seed_002_pipelines_and_averagers() -> None:
    out = run_example("seed_002_pipelines.py", "--samples", "2000", "--log-lines", "3000")
    assert "pipeline(10): [1, 0, -3, -8, -15, -24, -35, -48, -63, -80]" in out
    assert "[5.0, 4.5, 3.667, 4.75, 5.2, 5.333, 5.0, 4.375, 4.889, 4.5]" in out
    assert "seed 002: all outputs match" in out


@pytest.mark.timeout(150)
def test_seed_000_generator_pipeline_trains() -> None:
    out = run_example("seed_000_generator_pipeline.py", "--per-class", "16", "--epochs", "4")
    assert "catalan: [1, 1, 2, 5, 14, 42, 132, 429, 1430, 4862]" in out
    assert "losses: [0.9121, 0.7402]" in out
    assert "seed 000: all outputs match" in out


@pytest.mark.timeout(150)
def test_seed_001_generators_train_with_keras_fit() -> None:
    out = run_example("seed_001_generators.py", "--epochs", "4")
    assert "94 batches per epoch" in out
    # Keras took the steps from the pipeline: nobody computed ceil(3000 / 32).
    match = re.search(r"keras \(torch\): 94 steps per epoch, val_loss \[([\d., ]+)\]", out)
    assert match, out
    losses = [float(loss) for loss in match.group(1).split(",")]
    assert len(losses) == 4
    assert losses[-1] < 0.5 * losses[0]
    assert "seed 001: all outputs match" in out


@pytest.mark.timeout(150)
def test_seed_004_tf_data_pipeline_trains_with_keras_and_tf_data() -> None:
    out = run_example("seed_004_tf_data.py", "--per-class", "20", keras_backend="tensorflow")
    assert "backend: tensorflow" in out
    assert "random_map(my_image_augmenter, seed=0, workers=2, backend='process')" in out
    assert "first batch: images (16, 32, 32, 3) float32, labels (16,)" in out
    assert "TensorSpec(shape=(None, 32, 32, 3), dtype=tf.float32" in out
    fit = re.search(r"keras fit on the pipeline: loss ([\d.]+) -> ([\d.]+)", out)
    assert fit, out
    assert float(fit.group(2)) < 0.8 * float(fit.group(1))
    assert "seed 004: trained" in out


@pytest.mark.timeout(150)
def test_image_classifier_trains_on_real_files() -> None:
    out = run_example("image_classifier.py", "--per-class", "24", "--epochs", "6")
    assert "wrote 73 images (1 damaged)" in out
    assert "images skipped 1" in out  # the damaged file, counted by on_error="skip"
    final = out.split("final training accuracy ")[1]
    assert float(final.split()[0]) > 1 / 3 + 0.3
    assert "image classifier: trained" in out


@pytest.mark.timeout(150)
def test_seed_003_example_trains_from_csv_files() -> None:
    args = ("--rows", "5000", "--val-rows", "500", "--epochs", "6")
    out = run_example("seed_003_csv_regression.py", *args, python=("-W", "error::UserWarning"))
    assert "read_csv: 20 batches of the seed's generator per epoch" in out
    losses = [float(v) for v in re.findall(r"^epoch \d+: val_loss ([\d.]+)", out, re.M)]
    assert len(losses) == 7  # before training, then each of the 6 epochs
    before, first, last = losses[0], losses[1], losses[-1]
    assert last < 0.2 * first
    assert last < 0.02 * before
    assert "seed 003: trained from CSV files" in out


@pytest.mark.timeout(150)
def test_the_torch_training_example_loss_drops() -> None:
    args = ("--samples", "2048", "--epochs", "4", "--batch-size", "64")
    out = run_example("torch_training.py", *args)
    assert "32 batches per epoch" in out
    losses = [float(line.rsplit(" ", 1)[1]) for line in out.splitlines() if " loss " in line]
    assert len(losses) == 4
    assert losses[-1] < 0.2 * losses[0]
    assert "torch training: done" in out


@pytest.mark.timeout(150)
def test_the_torch_training_example_resumes_mid_epoch_from_its_checkpoint(tmp_path) -> None:
    args = ("--samples", "2048", "--epochs", "3", "--batch-size", "64")
    whole = run_example("torch_training.py", *args)
    checkpoint = str(tmp_path / "ck.pt")
    stopped = run_example(
        "torch_training.py", *args, "--checkpoint", checkpoint, "--stop-after", "40"
    )
    assert "stopped after 40 steps, in epoch 2" in stopped
    resumed = run_example("torch_training.py", *args, "--checkpoint", checkpoint)
    assert "resumed in epoch 2 after 512 examples" in resumed  # 8 of its 32 batches

    def losses(out: str) -> list[str]:
        return [line for line in out.splitlines() if line.startswith("epoch ")]

    # The same batches in the same order, none seen twice: the same losses.
    assert losses(stopped) + losses(resumed) == losses(whole)
    assert "torch training: done" in resumed


@pytest.mark.timeout(150)
def test_the_jax_training_example_loss_drops() -> None:
    out = run_example("jax_training.py", "--examples", "1024", "--epochs", "3")
    assert "16 batches of up to 64 per epoch" in out
    losses = [float(line.rsplit(" ", 1)[1]) for line in out.splitlines() if "mean loss" in line]
    assert len(losses) == 3
    assert losses[-1] < 0.1 * losses[0]
    assert "jax training: loss dropped" in out


@pytest.mark.timeout(200)
def test_the_ray_cluster_example_trains_with_decoding_on_ray_actors() -> None:
    out = run_example("ray_cluster.py", "--images", "128", "--epochs", "3")
    epochs = [line.split() for line in out.splitlines() if line.startswith("epoch ")]
    assert len(epochs) == 3
    losses = [float(words[3]) for words in epochs]
    assert losses[-1] < losses[0]
    assert float(epochs[-1][5]) > 0.9
    assert "ray cluster training: done" in out
