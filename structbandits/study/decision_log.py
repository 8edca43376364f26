"""The CSV export of a study's decisions and outcomes, and the codec for their contexts.

A study lives in its decision store (``study.store``); ``OnlineAgent.export_csv(folder)`` writes it
out as two CSV files (and ``study.json``), the format ``study.logged.load_decision_log`` reads:

``decisions.csv``
    decision_id, time (UTC, ISO 8601), context (JSON), action, propensity, model_version
    (the number of observations in the model that made the decision), worker (the process that made it).
``observations.csv``
    sequence (0, 1, ... in the order applied), decision_id, time, reward (JSON), context (JSON, empty
    when the decision's own context was used).

Contexts are arrays (plain lists and tuples are read as arrays), or pytrees of arrays (dicts, NamedTuples such as the mediated contexts) whose
structure, leaf shapes and dtypes are fixed by the first context (``ContextSpec``). JSON stores
floats by their shortest round-trip repr, so a context read back from the store or an export is
bit-identical.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jax
import numpy as np

from structbandits.errors import ValidationError, check_finite
from structbandits.persistence import atomic_write_bytes

__all__ = ["DECISION_COLUMNS", "OBSERVATION_COLUMNS", "ContextSpec", "read_csv_rows", "utc_now", "write_csv_log"]

DECISION_COLUMNS = ["decision_id", "time", "context", "action", "propensity", "model_version"]
OBSERVATION_COLUMNS = ["sequence", "decision_id", "time", "reward", "context"]


def utc_now() -> str:
    """The current UTC time, ISO 8601 with microseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _as_context(value: Any) -> Any:
    # Plain lists and tuples of numbers are arrays (``select([0.3, -1.0])``), not pytrees of scalars.
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        try:
            return np.asarray(value, dtype=np.result_type(*np.asarray(value, dtype=object).ravel().tolist() or [0.0]))
        except (TypeError, ValueError):
            raise ValidationError(f"context: expected numbers in a rectangular array, got {value!r}") from None
    return value


class ContextSpec:
    """The structure, leaf shapes and dtypes every context of one agent shares.

    Parameters
    ----------
    example : a context: an array (``(d,)``, ``(K, d)``, ...) or a pytree of arrays.
    """

    def __init__(self, example: Any):
        paths_leaves, self.treedef = jax.tree_util.tree_flatten_with_path(_as_context(example))
        if not paths_leaves:
            raise ValidationError(f"context: expected an array or a pytree of arrays, got {example!r} with no arrays")
        self.paths = [jax.tree_util.keystr(path) for path, _ in paths_leaves]
        leaves = [np.asarray(leaf) for _, leaf in paths_leaves]
        for path, leaf in zip(self.paths, leaves):
            if not (np.issubdtype(leaf.dtype, np.floating) or np.issubdtype(leaf.dtype, np.integer)):
                raise ValidationError(f"context{path}: expected numbers, got dtype {leaf.dtype}")
        self.shapes = [leaf.shape for leaf in leaves]
        self.dtypes = [leaf.dtype for leaf in leaves]
        self.is_array = self.paths == [""]

    def describe(self) -> dict[str, Any]:
        """JSON-able description (compared on load)."""
        return {"treedef": str(self.treedef), "paths": self.paths, "shapes": [list(s) for s in self.shapes],
                "dtypes": [d.str for d in self.dtypes]}

    def leaves(self, context: Any, name: str = "context") -> list[np.ndarray]:
        """Validated leaves of ``context``: same structure, shapes and dtypes, finite numbers."""
        context = _as_context(context)
        try:
            if self.is_array and jax.tree_util.tree_structure(context) != self.treedef:
                raise ValueError("not an array")
            raw = self.treedef.flatten_up_to(context)
        except (ValueError, TypeError):
            raise ValidationError(f"{name}: expected a context with the structure {self.treedef}, "
                                  f"got {jax.tree_util.tree_structure(context)}") from None
        out = []
        for path, shape, dtype, value in zip(self.paths, self.shapes, self.dtypes, raw):
            label = f"{name}{path}"
            array = np.asarray(value)
            if array.dtype == bool or not (np.issubdtype(array.dtype, np.number)):
                raise ValidationError(f"{label}: expected numbers of dtype {dtype}, got {value!r}")
            if array.shape != shape:
                raise ValidationError(f"{label}: expected shape {shape}, got shape {array.shape}")
            check_finite(label, array)
            if np.issubdtype(dtype, np.integer) and not np.all(np.asarray(array) == np.round(array)):
                raise ValidationError(f"{label}: expected integers, got {array.tolist()!r}")
            out.append(array.astype(dtype))
        return out

    def validate(self, context: Any, name: str = "context") -> Any:
        """``context`` with validated NumPy leaves in this spec's structure."""
        return jax.tree_util.tree_unflatten(self.treedef, self.leaves(context, name))

    def encode(self, context: Any) -> str:
        """JSON text of a validated context (a list for an array, an object by leaf path otherwise)."""
        leaves = [leaf.tolist() for leaf in jax.tree_util.tree_leaves(context)]
        return json.dumps(leaves[0] if self.is_array else dict(zip(self.paths, leaves)), allow_nan=False)

    def decode(self, text: str) -> Any:
        """The context stored as JSON ``text`` by ``encode``."""
        value = json.loads(text)
        leaves = [value] if self.is_array else [value[path] for path in self.paths]
        arrays = [np.asarray(leaf, dtype=dtype).reshape(shape) for leaf, dtype, shape in zip(leaves, self.dtypes, self.shapes)]
        return jax.tree_util.tree_unflatten(self.treedef, arrays)

    def stack(self, contexts: list[Any]) -> list[np.ndarray]:
        """Leaves of many validated contexts stacked on a new leading axis (one array per leaf)."""
        return [np.stack([leaves[i] for leaves in map(jax.tree_util.tree_leaves, contexts)])
                if contexts else np.zeros((0, *shape), dtype) for i, (shape, dtype) in enumerate(zip(self.shapes, self.dtypes))]

    def unstack(self, stacked: list[np.ndarray]) -> list[Any]:
        """Inverse of ``stack``."""
        count = stacked[0].shape[0] if stacked else 0
        return [jax.tree_util.tree_unflatten(self.treedef, [leaf[i] for leaf in stacked]) for i in range(count)]


def _csv_text(columns: list[str], rows: Iterable[Mapping[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(column) is None else
                         repr(float(row[column])) if column == "propensity" else row[column] for column in columns])
    return buffer.getvalue()


def write_csv_log(folder: str | Path, decisions: Sequence[Mapping[str, Any]], observations: Sequence[Mapping[str, Any]],
                  settings: Mapping[str, Any] | None = None) -> Path:
    """Write an exported study: ``decisions.csv``, ``observations.csv`` (and ``study.json`` of ``settings``).

    Parameters
    ----------
    folder : created if missing; each file is replaced atomically.
    decisions : rows with the keys of ``DECISION_COLUMNS`` (``worker`` too, when known), in id order.
    observations : rows with the keys of ``OBSERVATION_COLUMNS`` (context None or "": the decision's own).
    settings : JSON-able study settings (name, hyperparameters, ...), written to ``study.json``.

    Returns
    -------
    The folder.
    """
    folder = Path(folder)
    decision_columns = DECISION_COLUMNS + (["worker"] if decisions and "worker" in decisions[0] else [])
    atomic_write_bytes(folder / "decisions.csv", _csv_text(decision_columns, decisions).encode("utf-8"))
    atomic_write_bytes(folder / "observations.csv", _csv_text(OBSERVATION_COLUMNS, observations).encode("utf-8"))
    if settings is not None:
        atomic_write_bytes(folder / "study.json", json.dumps(dict(settings), indent=1, sort_keys=True).encode("utf-8"))
    return folder


def read_csv_rows(path: str | Path) -> list[dict[str, str]]:
    """The complete rows of a ``decisions.csv`` / ``observations.csv`` (none when the file is missing).

    A last row without its final newline (a log of an older version cut short by a crash: never
    acknowledged) is left out; the file is not changed.
    """
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    return list(csv.DictReader(io.StringIO(text)))
