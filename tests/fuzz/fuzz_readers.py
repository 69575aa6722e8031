"""Every reader over many mutated real files: run by ``test_fuzz.py`` in a child process.

``python fuzz_readers.py KIND CASES SEED FOLDER`` writes a real file of kind ``KIND``
(with the library that writes such files), mutates it ``CASES`` times (truncations,
bit flips, inserted and repeated bytes, huge length fields; the compressed bytes or
the plain ones before compressing) and reads every mutant twice:

- under ``on_error="raise"``, only ``ParseError`` or ``DecodeError`` may escape;
- under ``on_error="skip"``, nothing escapes and the reader's counts add up:
  read = yielded + rejected.

It prints one JSON line: the cases run, what each policy saw, every broken promise
(with the mutant's recipe, to replay it) and the child's peak memory.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import logging
import lzma
import resource
import sys
import tarfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import headrace as hr
from headrace.vision import decode

#: What a reader may raise under "raise" for bad data.
NAMED = (hr.ParseError, hr.DecodeError)
_COMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "": lambda data: data,
    ".gz": gzip.compress,
    ".bz2": bz2.compress,
    ".xz": lzma.compress,
}


def _text() -> bytes:
    return "".join(f"line {i} {'é' * (i % 5)} {i * 7}\n" for i in range(200)).encode()


def _jsonl() -> bytes:
    rows = [{"n": i, "s": f"v{i}", "xs": [i, [i, {"d": i}]]} for i in range(150)]
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def _csv() -> bytes:
    import pandas as pd

    frame = pd.DataFrame(
        {"a": np.arange(200), "b": np.arange(200) / 4, "c": [f'x,"{i}"' for i in range(200)]}
    )
    return frame.to_csv(index=False).encode()


def _parquet() -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"a": np.arange(300), "b": [f"s{i}" for i in range(300)]})
    out = io.BytesIO()
    pq.write_table(table, out, row_group_size=50)
    return out.getvalue()


def _tar() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        for key in range(12):
            for ext, data in (("txt", f"sample {key}".encode()), ("cls", str(key).encode())):
                member = tarfile.TarInfo(f"s{key:03d}.{ext}")
                member.size = len(data)
                archive.addfile(member, io.BytesIO(data))
    return out.getvalue()


def _image(kind: str) -> bytes:
    from PIL import Image

    pixels = (np.arange(48 * 64 * 3) % 251).astype(np.uint8).reshape(48, 64, 3)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=kind)
    return out.getvalue()


def mutate(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    """One mutant of ``data`` and the recipe that made it."""
    size = len(data)
    how = rng.integers(6)
    at = int(rng.integers(max(size, 1)))
    if how == 0:
        return data[:at], f"cut at {at}"
    if how == 1:
        flipped = bytearray(data)
        spots = rng.integers(size, size=int(rng.integers(1, 9)))
        for spot in spots:
            flipped[spot] ^= 1 << int(rng.integers(8))
        return bytes(flipped), f"bits flipped at {sorted(int(s) for s in spots)}"
    if how == 2:
        extra = rng.integers(256, size=int(rng.integers(1, 65)), dtype=np.uint8).tobytes()
        return data[:at] + extra + data[at:], f"{len(extra)} bytes inserted at {at}"
    if how == 3:
        span = int(rng.integers(1, 200))
        return data[:at] + data[at : at + span] * 3 + data[at:], f"{span} bytes tripled at {at}"
    if how == 4:
        huge = rng.choice([b"\x7f\xff\xff\xff", b"\xff\xff\xff\xff", b"77777777777\x00"])
        return data[:at] + bytes(huge) + data[at + len(huge) :], f"huge field at {at}"
    return data[at:], f"head cut at {at}"


def _huge_lengths(kind: str, data: bytes) -> list[tuple[bytes, str]]:
    """Mutants whose length fields claim far more than there is."""
    out = []
    if kind == "tar":
        for member in range(4):
            at = member * 1024 + 124  # the size field of a member's header
            for size in (b"77777777777\x00", b"\x80" + b"\x00" * 7 + b"\x7f" * 4):
                patched = data[:at] + size + data[at + 12 :]
                out.append((patched, f"member {member} size {size!r}"))
    if kind.startswith("parquet"):
        for length in (b"\xff\xff\xff\x7f", b"\x00\x00\x00\x80", b"\x10\x00\x00\x00"):
            out.append((data[:-8] + length + b"PAR1", f"footer length {length!r}"))
    if kind == "png":
        for at in range(8, min(len(data), 200), 37):
            patched = data[:at] + b"\x7f\xff\xff\xff" + data[at + 4 :]
            out.append((patched, f"png length at {at}"))
    return out


def _count(element: Any) -> int:
    """Records in one element: the rows of a batch dict, else one."""
    if isinstance(element, dict) and element and all(hasattr(v, "shape") for v in element.values()):
        return len(next(iter(element.values())))
    return 1


def _readers(kind: str) -> tuple[bytes, list[str], Callable[[str, str], hr.Pipeline[Any]]]:
    """The real file, the suffixes to try, and how to read a path under a policy."""
    if kind == "text":
        return _text(), list(_COMPRESS), lambda p, e: hr.text_lines(p, on_error=e)
    if kind == "jsonl":
        return _jsonl(), list(_COMPRESS), lambda p, e: hr.read_jsonl(p, on_error=e)
    if kind in ("csv-python", "csv-pyarrow"):
        engine = kind.split("-")[1]
        return _csv(), ["", ".gz"], lambda p, e: hr.read_csv(p, engine=engine, on_error=e)
    if kind == "csv-short-rows":  # a limit that the longer rows of the file are over
        return (
            _csv(),
            ["", ".gz"],
            lambda p, e: hr.read_csv(p, engine="pyarrow", max_record_bytes=18, on_error=e),
        )
    if kind == "csv-batches":
        return _csv(), ["", ".xz"], lambda p, e: hr.read_csv(p, batch_size=16, on_error=e)
    if kind == "parquet":
        return _parquet(), [""], lambda p, e: hr.read_parquet(p, on_error=e)
    if kind == "parquet-batches":
        return _parquet(), [""], lambda p, e: hr.read_parquet(p, batch_size=64, on_error=e)
    if kind == "tar":
        return _tar(), ["", ".gz"], lambda p, e: hr.read_tar_shards(p, on_error=e)
    raise ValueError(kind)


def fuzz_file_reader(kind: str, cases: int, seed: int, folder: Path) -> dict[str, Any]:
    base, suffixes, read = _readers(kind)
    rng = np.random.default_rng(seed)
    seen: Counter[str] = Counter()
    broken: list[str] = []
    extension = {"text": ".txt", "jsonl": ".jsonl", "tar": ".tar"}
    name = ".parquet" if kind.startswith("parquet") else extension.get(kind, ".csv")
    mutants = [(data, "", recipe) for data, recipe in _huge_lengths(kind, base)]
    for case in range(cases):
        suffix = suffixes[case % len(suffixes)]
        if suffix and case % 2:  # the plain bytes mutated, then compressed
            data, recipe = mutate(base, rng)
            mutants.append((_COMPRESS[suffix](data), suffix, f"{recipe}, then {suffix}"))
        else:  # the bytes as stored mutated
            data, recipe = mutate(_COMPRESS[suffix](base), rng)
            mutants.append((data, suffix, f"{suffix or 'plain'}: {recipe}"))
    for number, (data, suffix, recipe) in enumerate(mutants):
        path = folder / f"case-{number}{name}{suffix}"
        path.write_bytes(data)
        try:
            list(read(str(path), "raise"))
            seen["raise: read whole"] += 1
        except NAMED as error:
            seen[f"raise: {type(error).__name__}"] += 1
        except Exception as error:  # what the fuzzing is looking for
            broken.append(f"{recipe}: under raise, {type(error).__name__}: {error}"[:400])
        try:
            run = iter(read(str(path), "skip"))
            yielded = sum(_count(element) for element in run)
            stats = next(row for row in run.stats() if "rejected" in row)
            if stats["read"] != yielded + stats["rejected"]:
                broken.append(
                    f"{recipe}: under skip, read {stats['read']} != yielded {yielded} "
                    f"+ rejected {stats['rejected']}"
                )
            seen["skip: rejected some" if stats["rejected"] else "skip: rejected none"] += 1
            if kind in ("csv-pyarrow", "csv-short-rows"):  # the engines agree
                limit = 18 if kind == "csv-short-rows" else 64 << 20
                _same_as_python(path, recipe, broken, limit)
        except Exception as error:
            broken.append(f"{recipe}: under skip, {type(error).__name__}: {error}"[:400])
        path.unlink()
    return {"cases": len(mutants), "seen": dict(seen), "broken": broken}


def _rows(path: Path, engine: str, limit: int) -> tuple[list[str], list[str]]:
    run = iter(hr.read_csv(str(path), engine=engine, max_record_bytes=limit, on_error="skip"))
    rows = [repr({key: getattr(v, "item", lambda v=v: v)() for key, v in r.items()}) for r in run]
    return rows, run.stats()[0]["examples"]


def _same_as_python(path: Path, recipe: str, broken: list[str], limit: int) -> None:
    arrow, python = _rows(path, "pyarrow", limit), _rows(path, "python", limit)
    if arrow != python:
        broken.append(f"{recipe}: the engines differ: pyarrow {arrow}, python {python}"[:600])


def fuzz_images(kind: str, cases: int, seed: int) -> dict[str, Any]:
    base = _image(kind.split("-")[1].upper())
    rng = np.random.default_rng(seed)
    mutants = _huge_lengths(kind.split("-")[1], base)
    mutants += [mutate(base, rng) for _ in range(cases)]
    seen: Counter[str] = Counter()
    broken: list[str] = []
    for data, recipe in mutants:
        try:
            decode(data, resize=(24, 32))
            seen["decoded"] += 1
        except hr.DecodeError:
            seen["DecodeError"] += 1
        except Exception as error:
            broken.append(f"{recipe}: {type(error).__name__}: {error}"[:400])
    items = [data for data, _ in mutants]
    run = iter(hr.from_iterable(items).map(decode, on_error="skip"))
    yielded = sum(1 for _ in run)
    stats = run.stats()[1]
    if yielded + stats["rejected"] != len(items):
        broken.append(f"under skip: {yielded} + {stats['rejected']} != {len(items)}")
    return {"cases": len(mutants), "seen": dict(seen), "broken": broken}


def _peak_rss_mb() -> int:
    """This process's peak resident memory: ``VmHWM``, which starts afresh at exec
    (``ru_maxrss`` keeps the parent's peak from before the fork)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def main() -> None:
    kind, cases, seed, folder = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    logging.disable(logging.CRITICAL)  # the skip summaries: counted here instead
    if kind.startswith("image-"):
        result = fuzz_images(kind, cases, seed)
    else:
        result = fuzz_file_reader(kind, cases, seed, Path(folder))
    result["max_rss_mb"] = _peak_rss_mb()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
