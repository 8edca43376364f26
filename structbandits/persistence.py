"""Safe, atomic snapshots of named arrays and pytrees: ``numpy.savez`` plus JSON metadata, never pickle.

A snapshot is one ``.npz`` file of named arrays with a ``__metadata__`` entry: a JSON document with
the format version, what the snapshot holds (``kind``), the caller's metadata (model name,
hyperparameters, counters, tree structures) and a SHA-256 hash of the arrays. Loading uses
``np.load(allow_pickle=False)``, recomputes the hash and checks the format version and kind, so a
corrupted file or a snapshot of something else gives a ``ValidationError``, never a wrong state.
``pytree_to_arrays`` / ``arrays_to_pytree`` store a pytree (a policy's state) under a name prefix and
restore it into the structure of a template, checking structure, shapes and dtypes: a snapshot
of a different model is rejected with a message saying which leaf differs.

Writes are atomic: the file is written next to its destination, fsync-ed, and moved into place with
``os.replace``; a crash leaves the previous snapshot (or none), never half of one.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from structbandits.errors import ValidationError

__all__ = [
    "FORMAT_VERSION",
    "arrays_hash",
    "arrays_to_pytree",
    "atomic_write_bytes",
    "load_snapshot",
    "pytree_to_arrays",
    "save_snapshot",
]

FORMAT_VERSION = 1
_METADATA = "__metadata__"


def atomic_write_bytes(path: str | Path, payload: bytes) -> Path:
    """Write ``payload`` to ``path`` atomically (temporary file in the same folder, fsync, ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(payload)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # so that the rename itself survives a power cut
    finally:
        os.close(directory)
    return path


def arrays_hash(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over every array's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def save_snapshot(path: str | Path, arrays: Mapping[str, Any], *, kind: str,
                  metadata: Mapping[str, Any] | None = None) -> Path:
    """Atomically save named numeric arrays and JSON-able ``metadata`` to ``path`` (an ``.npz`` file).

    Parameters
    ----------
    path : destination file; written whole or not at all.
    arrays : name -> numeric array (no object arrays: nothing that would need pickle).
    kind : what the snapshot holds (e.g. "structbandits.OnlineAgent"); checked on load.
    metadata : JSON-able information (model name, hyperparameters, counters), read back on load.

    Returns
    -------
    The path written.
    """
    arrays = {name: np.asarray(value) for name, value in arrays.items()}
    for name, array in arrays.items():
        if array.dtype == object or name == _METADATA:
            raise ValidationError(f"arrays[{name!r}]: expected a numeric array under a free name, got dtype {array.dtype}")
    document = {"format_version": FORMAT_VERSION, "kind": kind, "metadata": dict(metadata or {}),
                "hash": arrays_hash(arrays)}
    try:
        text = json.dumps(document, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValidationError(f"metadata: expected JSON-serialisable values (finite numbers), got: {err}") from None
    buffer = io.BytesIO()
    np.savez(buffer, **{_METADATA: np.asarray(text)}, **arrays)
    return atomic_write_bytes(path, buffer.getvalue())


def load_snapshot(path: str | Path, *, kind: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Load a snapshot written by ``save_snapshot``: (arrays by name, metadata).

    Raises
    ------
    ValidationError : no such file, not a snapshot, another format version or kind, or arrays that do
        not match their recorded hash (a corrupted or edited file).
    """
    path = Path(path)
    if not path.is_file():
        raise ValidationError(f"path: expected a saved snapshot file, got {str(path)!r} (no such file)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        document = json.loads(str(arrays.pop(_METADATA)[()]))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise ValidationError(f"path: expected a structbandits snapshot (.npz with JSON metadata), got {str(path)!r}, "
                              f"which could not be read ({type(err).__name__}: {err})") from None
    if not isinstance(document, dict) or "format_version" not in document:
        raise ValidationError(f"path: expected a structbandits snapshot, got {str(path)!r} without a format version")
    if document["format_version"] != FORMAT_VERSION:
        raise ValidationError(f"format_version: expected snapshot format {FORMAT_VERSION}, "
                              f"got {document['format_version']!r} in {str(path)!r}")
    if document.get("kind") != kind:
        raise ValidationError(f"kind: expected a snapshot of {kind!r}, got {document.get('kind')!r} in {str(path)!r}")
    if arrays_hash(arrays) != document.get("hash"):
        raise ValidationError(f"hash: the arrays in {str(path)!r} do not match their recorded hash (a corrupted file)")
    return arrays, document["metadata"]


def _leaves(tree: Any) -> tuple[list[np.ndarray], Any]:
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    out = []
    for leaf in leaves:
        if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        out.append(np.asarray(leaf))
    return out, treedef


def _describe(leaves: list[np.ndarray], treedef: Any) -> dict[str, Any]:
    return {"treedef": str(treedef), "leaves": [[list(a.shape), a.dtype.str] for a in leaves]}


def pytree_to_arrays(tree: Any, prefix: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """A pytree's leaves as arrays named ``{prefix}/{i}`` and a JSON-able description of its structure."""
    leaves, treedef = _leaves(tree)
    return {f"{prefix}/{i}": leaf for i, leaf in enumerate(leaves)}, _describe(leaves, treedef)


def arrays_to_pytree(template: Any, arrays: Mapping[str, np.ndarray], prefix: str,
                     structure: Mapping[str, Any], *, name: str = "state") -> Any:
    """Restore the pytree saved by ``pytree_to_arrays`` into ``template``'s structure.

    ``template`` gives the expected structure, leaf shapes and dtypes (e.g. ``policy.init(key)``);
    a mismatch (the state of another model or other hyperparameters) raises ``ValidationError``
    naming the first leaf that differs. Returns the pytree with NumPy leaves.
    """
    leaves, treedef = _leaves(template)
    expected = _describe(leaves, treedef)
    if structure.get("treedef") != expected["treedef"]:
        raise ValidationError(f"{name}: expected the structure {expected['treedef']}, got {structure.get('treedef')} "
                              "(a snapshot of a different model?)")
    if len(structure.get("leaves", [])) != len(leaves) or any(f"{prefix}/{i}" not in arrays for i in range(len(leaves))):
        raise ValidationError(f"{name}: expected {len(leaves)} arrays, got a snapshot with a different number")
    for index, (want, got) in enumerate(zip(expected["leaves"], structure["leaves"])):
        if list(want) != list(got):
            raise ValidationError(f"{name} leaf {index}: expected shape {tuple(want[0])} and dtype {np.dtype(want[1])}, "
                                  f"got shape {tuple(got[0])} and dtype {np.dtype(got[1])} "
                                  "(a snapshot of a model with other sizes?)")
    restored = [arrays[f"{prefix}/{i}"] for i in range(len(leaves))]
    return jax.tree_util.tree_unflatten(treedef, restored)
