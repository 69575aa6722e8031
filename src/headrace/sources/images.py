"""The source of ``image_folder``: ``(path, label)`` pairs of a folder of class folders.

The layout of seed 000, torchvision's ``ImageFolder`` and Keras'
``image_dataset_from_directory``::

    images/
        airedale/02c9.jpg  07dd.jpg
        boxer/0088.jpg  0e3c.jpg  1831.jpg

Nothing is read but the folder listings: decoding the images is a later stage (a
``map`` with workers), so the listing stays cheap and the decoding runs in parallel.

>>> import headrace as hr, pathlib, tempfile
>>> scratch = tempfile.TemporaryDirectory()
>>> root = pathlib.Path(scratch.name)
>>> for name in ["boxer/b.jpg", "airedale/a.png", "boxer/notes.txt"]:
...     (root / name).parent.mkdir(exist_ok=True)
...     (root / name).touch()
>>> images = hr.image_folder(root)
>>> images.classes
('airedale', 'boxer')
>>> [(pathlib.Path(path).name, label) for path, label in images]
[('a.png', 0), ('b.jpg', 1)]
>>> scratch.cleanup()
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any, Final, overload

from headrace._checks import check_shuffle
from headrace._seeds import python_rng
from headrace.engine.stage import RUN_LOCK, StageContext
from headrace.policy import Tally
from headrace.sources.files import (
    FileSource,
    ReadPosition,
    check_position,
    is_url,
    local_path,
    remote_filesystem,
)

__all__ = ["IMAGE_EXTENSIONS", "ImageFiles"]

logger = logging.getLogger("headrace")

#: The files ``image_folder`` takes by default: what Pillow reads, in any letter case.
IMAGE_EXTENSIONS: Final = (
    ".bmp",
    ".gif",
    ".jpeg",
    ".jpg",
    ".pgm",
    ".png",
    ".ppm",
    ".tif",
    ".tiff",
    ".webp",
)


class ImageFiles(FileSource):
    """The source of :func:`image_folder`: one ``(path, label)`` per image file.

    The read position counts files: ``records`` is 1 once a file's pair is handed out.
    """

    __slots__ = (
        "_classes",
        "_extensions",
        "_given",
        "_index",
        "_prefix",
        "_remote",
        "_root",
        "_seed",
        "_shuffle",
    )
    kind = "image_folder"

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        extensions: Sequence[str] | None = IMAGE_EXTENSIONS,
        classes: Sequence[str] | None = None,
        shuffle: bool = False,
        seed: int | None = None,
        num_shards: int = 1,
        shard_index: int = 0,
    ) -> None:
        if not isinstance(root, str | os.PathLike):
            raise TypeError(
                f"root must be the path or URL of one folder, got {type(root).__name__}: {root!r}"
            )
        super().__init__(root, num_shards=num_shards, shard_index=shard_index)
        self._root = self._patterns[0]
        if not self._root:
            raise ValueError("root is empty")
        self._remote = is_url(self._root)
        # What every path of the listing starts with, up to its class folder's name.
        if self._remote:
            self._prefix = self._root.rstrip("/") + "/"
        else:
            self._prefix = os.path.join(local_path(self._root), "")
        self._extensions = _check_extensions(extensions)
        self._classes = _check_classes(classes)
        self._given = self._classes is not None
        self._index = _indexes(self._classes)
        self._shuffle, self._seed = check_shuffle(shuffle, seed, "files")

    def unfixed_order(self, *, seeded: bool = False) -> str | None:
        if self._shuffle and self._seed is None and not seeded:
            return "shuffle=True without a seed"
        return None

    def options(self) -> str:
        extra = ""
        if self._extensions != IMAGE_EXTENSIONS:
            extra += f", extensions={self._extensions!r}"
        if self._given:
            names = ", ".join(map(repr, self.classes[:3]))
            extra += f", classes=[{names}{', ...' if len(self.classes) > 3 else ''}]"
        if self._shuffle:
            extra += ", shuffle=True"
        if self._seed is not None:
            extra += f", seed={self._seed}"
        return extra

    # -- the listing ----------------------------------------------------------------------

    @property
    def classes(self) -> tuple[str, ...]:
        """The class names, sorted; a label is an index into them.

        Unless given, they are the subfolders found the first time they are asked for
        (here or by the first run), and stay fixed for every later run.
        """
        classes = self._classes
        if classes is None:
            classes = self._fix_classes(self._class_folders())
        return classes

    def _fix_classes(self, found: list[str]) -> tuple[str, ...]:
        if not found:
            raise FileNotFoundError(
                f"image_folder found no class folders in {self._root!r}; it expects one "
                "subfolder per class, holding that class's images"
            )
        with RUN_LOCK:  # two runs starting at once must agree on one list
            if self._classes is None:
                self._classes = tuple(found)
                self._index = _indexes(self._classes)
            return self._classes

    def _class_folders(self) -> list[str]:
        """The names of the root's subfolders, sorted, without hidden ones."""
        if self._remote:
            fs, path = remote_filesystem(self._root)
            try:
                entries = fs.ls(path, detail=True)
            except FileNotFoundError:
                raise FileNotFoundError(
                    f"image_folder root {self._root!r} does not exist"
                ) from None
            names = [
                entry["name"].rstrip("/").rsplit("/", 1)[-1]
                for entry in entries
                if entry.get("type") == "directory"
            ]
        else:
            root = local_path(self._root)
            if not os.path.exists(root):
                raise FileNotFoundError(f"image_folder root {root!r} does not exist")
            if not os.path.isdir(root):
                raise NotADirectoryError(f"image_folder root {root!r} is not a folder")
            with os.scandir(root) as entries:
                names = [entry.name for entry in entries if entry.is_dir()]
        return sorted(name for name in names if not name.startswith("."))

    def _image_files(self, name: str) -> list[str]:
        """The images in class folder ``name`` and the folders under it, sorted."""
        endings = self._extensions
        found: list[tuple[str, str]] = []  # (path relative to the class folder, full path)
        if self._remote:
            base = f"{self._prefix}{name}/"
            fs, folder = remote_filesystem(base)
            # Some filesystems keep the trailing slash, which HTTP needs to resolve the
            # folder page's links; the names found begin with the folder either way.
            prefix = folder.rstrip("/") + "/"
            for found_name in fs.find(folder if folder.endswith("/") else prefix):
                relative = found_name[len(prefix) :]
                if (
                    found_name.startswith(prefix)
                    and not any(part.startswith(".") for part in relative.split("/"))
                    and (endings is None or relative.lower().endswith(endings))
                ):
                    found.append((relative, base + relative))
        else:
            top = os.path.join(local_path(self._root), name)
            seen: set[tuple[int, int]] = set()
            for folder, subfolders, file_names in os.walk(top, onerror=_raise, followlinks=True):
                # Followed links may lead back up: walk each real folder once.
                status = os.stat(folder)
                if (status.st_dev, status.st_ino) in seen:
                    subfolders.clear()
                    continue
                seen.add((status.st_dev, status.st_ino))
                subfolders[:] = [s for s in subfolders if not s.startswith(".")]
                relative = os.path.relpath(folder, top)
                head = "" if relative == "." else relative.replace(os.sep, "/") + "/"
                parent = folder + os.sep  # os.path.join per file costs a third of the listing
                found.extend(
                    (head + file_name, parent + file_name)
                    for file_name in file_names
                    if not file_name.startswith(".")
                    and (endings is None or file_name.lower().endswith(endings))
                )
        found.sort()
        return [path for _, path in found]

    def listing(self) -> list[tuple[str, int]]:
        """Every ``(path, label)`` under the root, by class and then by path.

        Lists the folders anew on every call; the classes stay those fixed first.
        """
        present = self._class_folders()
        classes = self._fix_classes(present) if self._classes is None else self._classes
        missing = sorted(set(classes) - set(present))
        if missing:
            raise FileNotFoundError(
                f"image_folder has no folder for class {missing[0]!r} in {self._root!r}"
                + (f" (nor for {len(missing) - 1} more)" if len(missing) > 1 else "")
            )
        if not self._given:
            new = sorted(set(present) - set(classes))
            if new:
                logger.warning(
                    "image_folder(%r) leaves out folder(s) %s: they appeared after the "
                    "classes %s were fixed (a new image_folder lists them)",
                    self._root,
                    ", ".join(map(repr, new)),
                    list(classes),
                )
        items = [
            (path, label) for label, name in enumerate(classes) for path in self._image_files(name)
        ]
        if not items:
            endings = self._extensions
            wanted = "files" if endings is None else f"{', '.join(endings)} files"
            raise FileNotFoundError(
                f"image_folder found no {wanted} in the class folders of {self._root!r}"
            )
        return items

    def paths(self) -> list[str]:
        """This shard's image files, in listing order (not shuffled)."""
        return [path for path, _ in self._shard()]

    def _shard(self) -> list[tuple[str, int]]:
        every = self.listing()
        if self._num_shards > len(every):
            raise ValueError(
                f"image_folder has {len(every)} image file(s) to share among "
                f"{self._num_shards} shards; every shard needs at least one"
            )
        return every[self._shard_index :: self._num_shards]

    # -- reading --------------------------------------------------------------------------

    def reader(
        self, ctx: StageContext, position: ReadPosition | None = None
    ) -> tuple[Iterator[Any], ReadPosition]:
        start = ReadPosition() if position is None else copy.copy(position)
        seed = self._seed if self._seed is not None else ctx.seed
        if self._shuffle and seed is None and (start.file or start.records):
            raise ValueError(
                f"{ctx.label}: a shuffled image_folder resumes only with a seed: without "
                "one, every run draws a new order and the saved position means nothing"
            )
        items = self._shard()
        if self._shuffle:
            python_rng(seed, ctx.epoch).shuffle(items)
        paths = [path for path, _ in items]
        check_position(ctx.label, start, paths)
        return self._run(paths, self._policy.tally(ctx), start), start

    def read_file(self, path: str, tally: Tally, position: ReadPosition) -> Iterator[Any]:
        if position.records:  # handed out before the position was saved
            return
        tally.read += 1
        position.records = 1
        yield path, self._label(path)

    def _label(self, path: str) -> int:
        prefix = self._prefix
        separator = "/" if self._remote else os.sep
        name = path[len(prefix) :].split(separator, 1)[0] if path.startswith(prefix) else ""
        index = self._index
        if index is None:
            index = _indexes(self.classes)
        label = index.get(name)
        if label is None:
            raise ValueError(f"{path!r} is not in a class folder of {self._root!r}")
        return label


@overload
def _indexes(classes: tuple[str, ...]) -> dict[str, int]: ...
@overload
def _indexes(classes: None) -> None: ...
def _indexes(classes: tuple[str, ...] | None) -> dict[str, int] | None:
    return None if classes is None else {name: index for index, name in enumerate(classes)}


def _check_extensions(extensions: object) -> tuple[str, ...] | None:
    if extensions is None:
        return None
    if isinstance(extensions, str) or not isinstance(extensions, Sequence):
        raise TypeError(
            "extensions must be a list of file name endings such as ['.jpg', '.png'] "
            f"(or None for every file), got {extensions!r}"
        )
    endings = []
    for ending in extensions:
        if not isinstance(ending, str) or not ending.strip("."):
            raise ValueError(f"extensions must hold endings such as '.jpg', got {ending!r}")
        endings.append(ending.lower() if ending.startswith(".") else f".{ending.lower()}")
    if not endings:
        raise ValueError("extensions is empty; pass None to take every file")
    return tuple(endings)


def _check_classes(classes: object) -> tuple[str, ...] | None:
    if classes is None:
        return None
    if isinstance(classes, str) or not isinstance(classes, Sequence):
        raise TypeError(f"classes must be a list of folder names, got {classes!r}")
    names = tuple(classes)
    for name in names:
        if not isinstance(name, str) or not name or "/" in name or os.sep in name:
            raise ValueError(f"classes must hold folder names (no '/'), got {name!r}")
    if not names:
        raise ValueError("classes is empty")
    if len(set(names)) < len(names):
        twice = sorted({name for name in names if names.count(name) > 1})
        raise ValueError(f"classes names {twice[0]!r} more than once")
    return names


def _raise(error: OSError) -> None:
    # os.walk skips folders it cannot read unless told otherwise: images lost unsaid.
    raise error
