"""Durable decision and observation logs of an online agent, and the codec for their contexts.

Two CSV files in a log folder, appended one fsync-ed row at a time, so that a row exists on disk
before the decision (or observation) it records takes effect:

``decisions.csv``
    decision_id, time (UTC, ISO 8601), context (JSON), action, propensity, model_version
    (the number of observations in the model that made the decision).
``observations.csv``
    sequence (0, 1, ... in the order applied), decision_id, time, reward (JSON), context (JSON, empty
    when the decision's own context was used).

Contexts are arrays (plain lists and tuples are read as arrays), or pytrees of arrays (dicts, NamedTuples such as the mediated contexts) whose
structure, leaf shapes and dtypes are fixed by the first context (``ContextSpec``). JSON stores
floats by their shortest round-trip repr, so a context read back from the log is bit-identical.
A row cut short by a crash (no final newline) was never acknowledged; reading drops it.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jax
import numpy as np

from structbandits.errors import ValidationError, check_finite

__all__ = ["DECISION_COLUMNS", "OBSERVATION_COLUMNS", "ContextSpec", "DecisionLog", "utc_now"]

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


def _append_row(path: Path, columns: list[str], row: Iterable[Any]) -> None:
    new = not path.exists() or path.stat().st_size == 0
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if new:
        writer.writerow(columns)
    writer.writerow(list(row))
    with open(path, "a", encoding="utf-8", newline="") as out:
        out.write(buffer.getvalue())
        out.flush()
        os.fsync(out.fileno())


def _read_rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        # A crash cut the last row short before it was fsync-ed and acknowledged: drop it for good.
        text = text[: text.rfind("\n") + 1]
        with open(path, "r+", encoding="utf-8") as out:
            out.truncate(len(text.encode("utf-8")))
            out.flush()
            os.fsync(out.fileno())
    return list(csv.DictReader(io.StringIO(text)))


class DecisionLog:
    """Append-only ``decisions.csv`` and ``observations.csv`` in ``folder`` (created if missing)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.decisions_path = self.folder / "decisions.csv"
        self.observations_path = self.folder / "observations.csv"

    def append_decision(self, decision_id: int, time: str, context_json: str, action: int, propensity: float,
                        model_version: int) -> None:
        """Write one decision row and fsync it."""
        _append_row(self.decisions_path, DECISION_COLUMNS,
                    [decision_id, time, context_json, action, repr(float(propensity)), model_version])

    def append_observation(self, sequence: int, decision_id: int, time: str, reward_json: str,
                           context_json: str = "") -> None:
        """Write one observation row and fsync it."""
        _append_row(self.observations_path, OBSERVATION_COLUMNS, [sequence, decision_id, time, reward_json, context_json])

    def decisions(self) -> list[dict[str, str]]:
        """Every complete decision row, in order."""
        return _read_rows(self.decisions_path)

    def observations(self) -> list[dict[str, str]]:
        """Every complete observation row, in order."""
        return _read_rows(self.observations_path)

    def read_decisions(self):
        """``decisions.csv`` as a pandas DataFrame (context as JSON text)."""
        import pandas as pd

        return pd.read_csv(self.decisions_path, dtype={"context": str, "time": str})
