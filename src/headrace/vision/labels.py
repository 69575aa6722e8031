"""Class names to integer labels and one-hot rows, and back: what seed 000 used
scikit-learn's ``LabelBinarizer`` for, without scikit-learn.

The classes are sorted when fitted, so the same names give the same labels in every
run and on every machine; :meth:`LabelEncoder.as_dict` keeps them with a model.

>>> from headrace.vision.labels import LabelEncoder
>>> encoder = LabelEncoder.fit(["dog", "cat", "dog", "bird"])
>>> encoder.classes
('bird', 'cat', 'dog')
>>> encoder.encode("dog"), encoder.encode(["cat", "bird"]).tolist()
(2, [1, 0])
>>> encoder.one_hot(["cat", "dog"])
array([[0., 1., 0.],
       [0., 0., 1.]], dtype=float32)
>>> encoder.decode([2, 0]), encoder.from_one_hot([[0.1, 0.7, 0.2]])
(['dog', 'bird'], ['cat'])
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from typing import Any, overload

import numpy as np
import numpy.typing as npt

__all__ = ["LabelEncoder"]

#: Classes shown in an error message before it says how many more there are.
_SHOWN = 5


class LabelEncoder:
    """A fixed list of classes; a label is a class's index in it.

    Unlike ``LabelBinarizer``, two classes give two one-hot columns, not one.
    """

    __slots__ = ("_classes", "_index")

    def __init__(self, classes: Iterable[Hashable]) -> None:
        """The classes in label order, as given (:meth:`fit` sorts them)."""
        if isinstance(classes, str | bytes):
            raise TypeError(f"classes must be a list of names, got a single name: {classes!r}")
        self._classes = tuple(classes)
        if not self._classes:
            raise ValueError("classes is empty: a label encoder needs at least one class")
        self._index: dict[Hashable, int] = {}
        for label, name in enumerate(self._classes):
            if name in self._index:
                raise ValueError(
                    f"class {name!r} is given twice (labels {self._index[name]} and {label})"
                )
            self._index[name] = label

    @classmethod
    def fit(cls, names: Iterable[Hashable]) -> LabelEncoder:
        """The sorted distinct ``names`` as classes (names must be sortable together)."""
        distinct = set(names)
        try:
            ordered = sorted(distinct)  # type: ignore[type-var]
        except TypeError as error:
            kinds = sorted({type(name).__name__ for name in distinct})
            raise TypeError(f"class names must sort together, got a mix of {kinds}") from error
        return cls(ordered)

    @property
    def classes(self) -> tuple[Hashable, ...]:
        """The class names in label order."""
        return self._classes

    def __len__(self) -> int:
        return len(self._classes)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelEncoder) and other._classes == self._classes

    def __hash__(self) -> int:
        return hash(self._classes)

    def __repr__(self) -> str:
        shown = ", ".join(map(repr, self._classes[:_SHOWN]))
        more = f", ... ({len(self)} classes)" if len(self) > _SHOWN else ""
        return f"LabelEncoder([{shown}{more}])"

    def __reduce__(self) -> tuple[type[LabelEncoder], tuple[tuple[Hashable, ...]]]:
        return (LabelEncoder, (self._classes,))

    @overload
    def encode(self, names: str) -> int: ...  # type: ignore[overload-overlap]
    @overload
    def encode(self, names: Iterable[Hashable]) -> npt.NDArray[np.int64]: ...
    def encode(self, names: Any) -> int | npt.NDArray[np.int64]:
        """The label of a name, or an int64 array of the labels of a list of names."""
        if isinstance(names, str | bytes) or not isinstance(names, Iterable):
            return self._label(names)
        return np.fromiter((self._label(name) for name in names), dtype=np.int64)

    def _label(self, name: Hashable) -> int:
        try:
            return self._index[name]
        except (KeyError, TypeError):
            shown = ", ".join(map(repr, self._classes[:_SHOWN]))
            more = f", ... ({len(self)} in all)" if len(self) > _SHOWN else ""
            raise ValueError(f"{name!r} is not one of the classes [{shown}{more}]") from None

    def decode(self, labels: Iterable[int] | npt.ArrayLike) -> list[Hashable]:
        """The names of integer labels."""
        array = np.asarray(labels)
        if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
            if array.size == 0 and array.ndim == 1:
                return []
            raise ValueError(
                f"labels must be a list of integers, got {array.dtype} of shape {array.shape}"
            )
        bad = array[(array < 0) | (array >= len(self))]
        if bad.size:
            raise ValueError(f"label {int(bad[0])} is out of range for {len(self)} classes")
        return [self._classes[label] for label in array.tolist()]

    def one_hot(
        self, names: Iterable[Hashable], dtype: npt.DTypeLike = np.float32
    ) -> npt.NDArray[Any]:
        """One row per name: 1 in its label's column, 0 elsewhere."""
        labels = self.encode(names)
        rows = np.zeros((len(labels), len(self)), dtype=dtype)
        rows[np.arange(len(labels)), labels] = 1
        return rows

    def from_one_hot(self, rows: Sequence[Sequence[float]] | npt.ArrayLike) -> list[Hashable]:
        """The names of one-hot rows, or of scores: each row's largest column wins."""
        array = np.asarray(rows)
        if array.ndim != 2 or array.shape[1] != len(self):
            raise ValueError(
                f"rows must be a 2-D array with {len(self)} columns, got shape {array.shape}"
            )
        return self.decode(array.argmax(axis=1))

    def as_dict(self) -> dict[str, list[Any]]:
        """Plain data to keep with a model: ``LabelEncoder.from_dict`` reads it back."""
        return {"classes": list(self._classes)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelEncoder:
        """The encoder :meth:`as_dict` described, with the same labels."""
        return cls(data["classes"])
