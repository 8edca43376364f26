"""A study's model as a function of its ordered outcomes: what every ``OnlineAgent`` of one study agrees on.

The state after m outcomes is ``policy.update`` applied to ``policy.init(init key)`` with outcomes
0, ..., m - 1 in sequence order (each with its decision's action and the context to update with), one
jitted call each, with the state kept as host arrays between calls so every path (fresh, replayed,
restored from a snapshot) hands ``jit`` the same input types and computes the same bits. Outcomes are
applied in blocks of ``update_every``; every ``snapshot_every`` outcomes the state is offered as a
snapshot blob (``store_schema.pack_arrays``) that a restart may start from instead of from zero.

Keys: the study's root key is split once into the init key, the decision stream (decision i acts
with ``fold_in(decision stream, i)``) and the diagnostics stream.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from structbandits.agents.protocol import Policy
from structbandits.errors import ValidationError, check_integer
from structbandits.persistence import arrays_to_pytree, pytree_to_arrays
from structbandits.study.decision_log import ContextSpec
from structbandits.study.store_schema import OutcomeRow, pack_arrays, unpack_arrays

__all__ = ["OutcomeReplay", "host_tree", "json_settings", "root_key", "spec_from_description"]


def host_tree(tree: Any) -> Any:
    """``tree`` with NumPy leaves (typed PRNG keys kept): one representation of the state on every path."""
    return jax.tree.map(lambda leaf: leaf if jax.dtypes.issubdtype(getattr(leaf, "dtype", float), jax.dtypes.prng_key)
                        else np.asarray(leaf), tree)


def root_key(key: Any) -> np.ndarray:
    """The root key (2,) uint32 of an integer seed or a ``jax.random.PRNGKey`` (raw or typed)."""
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return np.asarray(jax.random.PRNGKey(check_integer("key", key, minimum=0)))
    if isinstance(key, jax.Array) and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    array = np.asarray(key)
    if array.shape != (2,) or array.dtype != np.uint32:
        raise ValidationError(f"key: expected an integer seed or a jax.random.PRNGKey (shape (2,), uint32), "
                              f"got {type(key).__name__} with shape {array.shape} and dtype {array.dtype}")
    return array


def json_settings(name: str, value: Any) -> dict[str, Any]:
    """``value`` as a JSON round-tripped dict (so comparisons with stored settings are exact)."""
    if not isinstance(value, Mapping):
        raise ValidationError(f"{name}: expected a mapping of settings, got {value!r}")
    try:
        return json.loads(json.dumps(dict(value), sort_keys=True, allow_nan=False))
    except (TypeError, ValueError) as err:
        raise ValidationError(f"{name}: expected JSON-serialisable values, got an error: {err}") from None


def spec_from_description(description: dict[str, Any] | None, example_context: Any) -> ContextSpec | None:
    """The ``ContextSpec`` of a study: from ``example_context`` (checked against the stored description),
    else rebuilt from the description when contexts are arrays; None when neither is known yet."""
    if example_context is not None:
        spec = ContextSpec(example_context)
        if description is not None and spec.describe() != description:
            raise ValidationError(f"example_context: expected contexts like the study's {description}, "
                                  f"got {spec.describe()}")
        return spec
    if description is None:
        return None
    if description["paths"] != [""]:
        raise ValidationError(f"example_context: the study's contexts are pytrees ({description['treedef']}); "
                              "pass an example context to open it")
    return ContextSpec(np.zeros(description["shapes"][0], np.dtype(description["dtypes"][0])))


class OutcomeReplay:
    """The policy state after ``applied`` outcomes of a study, advanced by applying more in sequence order.

    Parameters
    ----------
    policy : the study's Policy.
    root : the study's root key (2,) uint32.
    update_every : outcomes are applied in blocks of this many (``target``).
    snapshot_every : every this many outcomes the state is kept for ``take_snapshot`` (0: never).
    """

    def __init__(self, policy: Policy, root: np.ndarray, *, update_every: int = 1, snapshot_every: int = 0):
        init_key, self.decision_root, self.diagnostics_key = jax.random.split(root, 3)
        self.update_every = check_integer("update_every", update_every, minimum=1)
        self.snapshot_every = check_integer("snapshot_every", snapshot_every, minimum=0)
        self._update = jax.jit(policy.update)
        self.state = self.template = host_tree(policy.init(init_key))
        self.structure = pytree_to_arrays(self.state, "state")[1]
        self.applied = 0
        self.last_outcome: list | None = None  # [decision_id, reward JSON] of outcome applied - 1
        self._due: tuple[int, Any] | None = None

    def target(self, total: int) -> int:
        """How many of ``total`` recorded outcomes the model should hold (whole blocks of ``update_every``)."""
        return total if self.update_every == 1 else max(self.applied, total // self.update_every * self.update_every)

    def apply(self, rows: list[OutcomeRow], spec: Callable[[], ContextSpec], study: str) -> None:
        """Apply ``rows`` (outcomes ``applied``, ``applied + 1``, ... in order); ``spec()`` decodes their contexts."""
        for row in rows:
            if row.sequence != self.applied:
                raise ValidationError(f"store: study {study!r} lacks outcome {self.applied} (found {row.sequence} next): "
                                      "not a contiguous record")
            context = spec().decode(row.context)
            reward = np.asarray(json.loads(row.reward), dtype=np.float64)
            self.state = host_tree(self._update(self.state, context, np.asarray(row.action, dtype=np.int64), reward))
            self.applied += 1
            self.last_outcome = [row.decision_id, row.reward]
            if self.snapshot_every and self.applied % self.snapshot_every == 0:
                self._due = (self.applied, self.state)

    def warm_up(self, context: Any, reward_shape: tuple[int, ...]) -> None:
        """Compile ``update`` for these context and reward shapes without running it."""
        try:  # a policy that rejects this reward shape says so at observe time, with the argument's name
            self._update.lower(self.state, context, np.asarray(0, dtype=np.int64), np.zeros(reward_shape)).compile()
        except (TypeError, ValueError, IndexError):
            pass

    def take_snapshot(self) -> tuple[int, bytes] | None:
        """(model_version, blob) of the latest state due for a snapshot since the last call, or None."""
        due, self._due = self._due, None
        return None if due is None else (due[0], self.blob(*due))

    def blob(self, version: int | None = None, state: Any = None) -> bytes:
        """The snapshot blob of ``state`` after ``version`` outcomes (default: the current ones)."""
        version, state = (self.applied, self.state) if version is None else (version, state)
        arrays, structure = pytree_to_arrays(state, "state")
        return pack_arrays(arrays, {"state_structure": structure, "model_version": version})

    def restore(self, arrays: Mapping[str, np.ndarray], structure: Mapping[str, Any], version: int,
                last_outcome: list | None = None) -> None:
        """Continue from a saved state (checked against this policy's state structure) after ``version`` outcomes."""
        self.state = host_tree(arrays_to_pytree(self.template, arrays, "state", structure))
        self.applied, self.last_outcome, self._due = version, last_outcome, None

    def restore_blob(self, blob: bytes, version: int, where: str) -> None:
        """Continue from a snapshot blob of ``store_schema.pack_arrays``."""
        arrays, meta = unpack_arrays(blob, where)
        self.restore(arrays, meta["state_structure"], version)
