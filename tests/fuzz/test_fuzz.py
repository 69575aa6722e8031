"""The fuzz suite: every reader over thousands of mutated real files (``fuzz_readers.py``).

Each kind runs in a child process, so that its peak memory is its own and a hang is
a timeout. The mutants are drawn from a fixed seed (``HEADRACE_FUZZ_SEED`` draws
others; ``HEADRACE_FUZZ_CASES`` changes how many), so a failure replays.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(300)

SCRIPT = Path(__file__).with_name("fuzz_readers.py")
SEED = int(os.environ.get("HEADRACE_FUZZ_SEED", "20261207"))
CASES = int(os.environ.get("HEADRACE_FUZZ_CASES", "1000"))
KINDS = [
    "text",
    "jsonl",
    "csv-python",
    "csv-pyarrow",
    "csv-short-rows",
    "csv-batches",
    "parquet",
    "parquet-batches",
    "tar",
    "image-png",
    "image-jpeg",
]


@pytest.mark.parametrize("kind", KINDS)
def test_mutated_files_give_named_errors_or_counted_skips(kind: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), kind, str(CASES), str(SEED), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    # Nothing printed behind the caller's back (an exception a library ignored).
    assert "Traceback" not in done.stderr, done.stderr[-4000:]
    result = json.loads(done.stdout)
    assert result["broken"] == [], "\n".join(result["broken"][:20])
    assert result["cases"] >= CASES
    seen = result["seen"]
    # Not vacuous: some mutants broke the reader's data, some did not.
    if kind.startswith("image-"):
        assert seen.get("DecodeError", 0) > 0
        assert seen.get("decoded", 0) > 0
    else:
        named = seen.get("raise: ParseError", 0) + seen.get("raise: DecodeError", 0)
        assert named > 0
        assert seen.get("skip: rejected some", 0) > 0
    assert result["max_rss_mb"] < 500, result
