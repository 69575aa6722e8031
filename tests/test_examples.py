"""The seed examples run as scripts, in a small configuration, and assert their outputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *args: str) -> str:
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
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
def test_seed_001_generators() -> None:
    out = run_example("seed_001_generators.py")
    assert "94 batches per epoch" in out
    assert "seed 001: all outputs match" in out


@pytest.mark.timeout(150)
def test_image_classifier_trains_on_real_files() -> None:
    out = run_example("image_classifier.py", "--per-class", "24", "--epochs", "6")
    assert "wrote 73 images (1 damaged)" in out
    assert "images skipped 1" in out  # the damaged file, counted by on_error="skip"
    final = out.split("final training accuracy ")[1]
    assert float(final.split()[0]) > 1 / 3 + 0.3
    assert "image classifier: trained" in out
