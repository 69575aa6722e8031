"""Time to the first batch of a resumed run, early and late in an epoch: resumed from
the stages' saved state, against replaying the epoch up to the saved position.

Two pipelines, batched by 256:

- ``range(10,000,000) -> map -> filter -> random_map -> batch``: the filter hides the
  count (its outputs do not tell its inputs), so it saves its input count;
- ``text_lines`` over 20 files of 100,000 lines ``-> map -> filter -> shuffle(1000)
  -> batch``: the reader saves its file and line, the shuffle its buffer (as places
  in its input: a resumed run reads again from before the oldest buffered line).

For each ``--positions`` (in batches), the script runs the pipeline that far once and
takes its state, then resumes ``--repeats`` times from that state and from the same
state without its stage entries (``"stages": None``, which makes headrace replay the
epoch up to the position, as it does for a user generator stage). It checks that both
give the same first batch and prints the medians and the ratio. Resuming should not
grow with the position; replaying grows with it.

    .venv/bin/python benchmarks/resume.py [--repeats 3] [--positions 10 1000 5000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import headrace as hr

N = 10_000_000
BATCH = 256
POSITIONS = (10, 1_000, 5_000)
FILES, LINES = 20, 100_000


def double(x: int) -> int:
    return 2 * x


def jitter(x: int, rng: np.random.Generator) -> float:
    return x + rng.random()


def keep(x: float) -> bool:
    return True


def odd_tail(x: int) -> bool:
    return x % 10 != 3


def counted(folder: Path) -> hr.Pipeline[Any]:
    return hr.range(N).map(double).filter(keep).random_map(jitter, seed=0).batch(BATCH)


def read(folder: Path) -> hr.Pipeline[Any]:
    return (
        hr.text_lines(str(folder / "*.txt"))
        .map(int)
        .filter(odd_tail)
        .shuffle(1000, seed=1)
        .batch(BATCH)
    )


def write_lines(folder: Path) -> None:
    for part in range(FILES):
        first = part * LINES
        text = "\n".join(str(i) for i in range(first, first + LINES)) + "\n"
        (folder / f"part-{part:02d}.txt").write_text(text)


def first_batch(pipeline: hr.Pipeline[Any], state: dict[str, Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    with pipeline.iter(state=state) as run:
        batch = next(run)
    return time.perf_counter() - start, batch


def state_after(pipeline: hr.Pipeline[Any], batches: int) -> dict[str, Any]:
    with pipeline.iter(epoch=0) as run:
        for _ in range(batches):
            next(run)
        return run.state()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--positions", type=int, nargs="+", default=list(POSITIONS))
    args = parser.parse_args()
    builds: dict[str, Callable[[Path], hr.Pipeline[Any]]] = {
        f"range({N:,}) -> map -> filter -> random_map -> batch({BATCH})": counted,
        f"text_lines({FILES} x {LINES:,}) -> map -> filter -> shuffle(1000) -> batch": read,
    }
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        write_lines(folder)
        for title, build in builds.items():
            print(title)
            print(f"  {'resumed after':>14} {'state s':>9} {'replay s':>9} {'replay/state':>13}")
            for position in args.positions:
                pipeline = build(folder)
                state = state_after(pipeline, position)
                if state["stages"] is None:
                    raise SystemExit(f"{title}: no stage state after {position} batches")
                replay = {**state, "stages": None}
                times: dict[str, list[float]] = {"state": [], "replay": []}
                firsts = {}
                for _ in range(args.repeats):
                    for kind, saved in (("state", state), ("replay", replay)):
                        seconds, firsts[kind] = first_batch(pipeline, saved)
                        times[kind].append(seconds)
                if not np.array_equal(firsts["state"], firsts["replay"]):
                    raise SystemExit(f"{title}: after {position} batches the resumed runs differ")
                fast, slow = (statistics.median(times[k]) for k in ("state", "replay"))
                print(f"  {position:>14,} {fast:9.4f} {slow:9.3f} {slow / fast:12.0f}x")


if __name__ == "__main__":
    main()
