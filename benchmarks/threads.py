"""Thread-backend map and prefetch against inline, on work that releases the GIL.

zlib releases the GIL while it compresses, as image decoders and most I/O do, so
threads can run it on both cores at once. Three variants in one process, interleaved:

- inline: ``map(compress)``, everything on the consumer's thread;
- ``map(compress, workers=2)`` on the thread backend;
- inline compress upstream of ``prefetch(4)``, with a consumer that decompresses
  (also GIL-free): producer and consumer overlap.

    python benchmarks/threads.py [--blocks 200] [--size 262144] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import zlib
from collections.abc import Callable

import headrace as hr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=200)
    parser.add_argument("--size", type=int, default=256 * 1024)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    # Compressible but not trivial: random bytes from a small alphabet.
    blocks = [bytes(b % 16 for b in os.urandom(args.size)) for _ in range(args.blocks)]

    def compress(block: bytes) -> bytes:
        return zlib.compress(block, 6)

    source = hr.from_iterable(blocks)
    inline = source.map(compress)
    threaded = source.map(compress, workers=2)
    prefetched = source.map(compress).prefetch(4)

    def consume(pipeline: hr.Pipeline[bytes], *, decompress: bool = False) -> int:
        total = 0
        for packed in pipeline:
            total += len(zlib.decompress(packed)) if decompress else len(packed)
        return total

    variants: dict[str, Callable[[], int]] = {
        "inline map": lambda: consume(inline),
        "map(workers=2), thread": lambda: consume(threaded),
        "inline map + decompressing consumer": lambda: consume(inline, decompress=True),
        "prefetch(4) + decompressing consumer": lambda: consume(prefetched, decompress=True),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, run in variants.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(samples) for name, samples in times.items()}
    mb = args.blocks * args.size / 2**20
    print(
        f"zlib level 6 on {args.blocks} blocks of {args.size // 1024} KiB ({mb:.0f} MiB), "
        f"median of {args.repeats}, {os.cpu_count()} cores"
    )
    for name, seconds in median.items():
        print(f"  {name:<40} {seconds:7.3f} s  {mb / seconds:7.1f} MiB/s")
    speedup = median["inline map"] / median["map(workers=2), thread"]
    overlap = (
        median["inline map + decompressing consumer"]
        / median["prefetch(4) + decompressing consumer"]
    )
    print(f"thread map speed-up, 2 workers vs inline: {speedup:.2f}x")
    print(f"prefetch speed-up with a busy consumer:   {overlap:.2f}x")


if __name__ == "__main__":
    main()
