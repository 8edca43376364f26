"""Which actions a policy can choose, read off its traced ``act`` program (no simulation).

A ``Policy`` does not declare its number of actions; its ``act`` computes it. ``action_range`` traces
``act`` once (``jax.make_jaxpr``, the same abstract evaluation the runner already does) and bounds the
integer values of the returned action by interval arithmetic over the program: ``argmax``/``argmin``
over an axis of size n give 0..n-1, ``jax.random.randint(key, shape, a, b)`` gives a..b-1, literals
are exact, and the bounds follow casts, reshapes, ``where`` (``select_n``), ``+``/``-``, ``max``/``min``,
nested ``jit``, ``cond`` and ``custom_jvp`` calls. Any other operation on the way makes the range
unknown (``None``): the bounds are never guessed, so a known range is a guarantee. Thompson sampling,
UCB and greedy agents (an argmax over per-arm scores), uniform random, warm-up mixtures of the two and
gated agents (``where(send, 1 + prompt, 0)``) all have a known range.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["action_range", "jaxpr_output_range"]

Interval = tuple[int, int] | None  # inclusive integer bounds, or unknown

# Operations whose output values are values of their first operand.
_SAME_VALUES = {"convert_element_type", "copy", "copy_p", "squeeze", "reshape", "broadcast_in_dim", "expand_dims",
                "slice", "dynamic_slice", "transpose", "rev", "reduce_max", "reduce_min"}


def _is_integer(aval: Any) -> bool:
    dtype = getattr(aval, "dtype", None)
    return dtype is not None and bool(jnp.issubdtype(dtype, jnp.integer))


def _literal(value: Any) -> Interval:
    array = np.asarray(value)
    if array.size == 0 or not np.issubdtype(array.dtype, np.integer):
        return None
    return int(array.min()), int(array.max())


def _hull(intervals: Sequence[Interval]) -> Interval:
    if not intervals or any(item is None for item in intervals):
        return None
    return min(lo for lo, _ in intervals), max(hi for _, hi in intervals)


def _sub_jaxprs(eqn: Any) -> tuple[list[Any], Sequence[Any]] | None:
    """(closed sub-programs whose outputs are the equation's outputs, their operands), or None."""
    name, params = eqn.primitive.name, eqn.params
    if name in ("jit", "pjit", "closed_call", "core_call", "remat", "checkpoint"):
        inner = params.get("jaxpr", params.get("call_jaxpr"))
        return ([inner], eqn.invars) if inner is not None else None
    if name in ("custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr"):
        inner = params.get("call_jaxpr", params.get("fun_jaxpr"))
        return ([inner], eqn.invars) if inner is not None else None
    if name == "cond":
        return list(params["branches"]), eqn.invars[1:]
    return None


def _equation(eqn: Any, read: Callable[[Any], Interval]) -> list[Interval]:
    name = eqn.primitive.name
    outs = eqn.outvars
    args = [read(var) for var in eqn.invars]
    if name in ("argmax", "argmin"):
        size = eqn.invars[0].aval.shape[eqn.params["axes"][0]]
        return [(0, size - 1) if size > 0 else None]
    if name in ("jit", "pjit") and str(eqn.params.get("name")) == "_randint" and len(args) == 3:
        # jax.random.randint(key, shape, minval, maxval): values minval..maxval-1 (for minval < maxval).
        low, high = args[1], args[2]
        if low is not None and high is not None and low[0] == low[1] and high[0] == high[1] and low[0] < high[0]:
            return [(low[0], high[0] - 1)]
    nested = _sub_jaxprs(eqn)
    if nested is not None:
        programs, operands = nested
        per_program = [jaxpr_output_range(program, [read(var) for var in operands]) for program in programs]
        return [_hull([ranges[i] for ranges in per_program]) for i in range(len(outs))]
    if len(outs) != 1 or not _is_integer(outs[0].aval):
        return [None] * len(outs)
    if name in _SAME_VALUES:
        return [args[0] if _is_integer(eqn.invars[0].aval) else None]
    if name == "select_n":
        return [_hull(args[1:])]
    if any(arg is None for arg in args):
        return [None]
    if name == "add":
        return [(args[0][0] + args[1][0], args[0][1] + args[1][1])]
    if name == "sub":
        return [(args[0][0] - args[1][1], args[0][1] - args[1][0])]
    if name in ("max", "min"):
        pick = max if name == "max" else min
        return [(pick(args[0][0], args[1][0]), pick(args[0][1], args[1][1]))]
    if name == "clamp":  # clamp(low, x, high) = min(max(x, low), high)
        low, x, high = args
        return [(min(max(x[0], low[0]), high[0]), min(max(x[1], low[1]), high[1]))]
    return [None]


def jaxpr_output_range(closed: Any, input_ranges: Sequence[Interval] | None = None) -> list[Interval]:
    """Bounds of every output of a closed jaxpr (``None`` where unknown), given bounds of its inputs."""
    jaxpr = closed.jaxpr
    known: dict[Any, Interval] = {}
    for var, const in zip(jaxpr.constvars, closed.consts):
        known[var] = _literal(const) if _is_integer(var.aval) else None
    for i, var in enumerate(jaxpr.invars):
        known[var] = input_ranges[i] if input_ranges is not None and i < len(input_ranges) else None

    def read(var: Any) -> Interval:
        if hasattr(var, "val"):  # a Literal
            return _literal(var.val)
        return known.get(var)

    for eqn in jaxpr.eqns:
        for out, interval in zip(eqn.outvars, _equation(eqn, read)):
            known[out] = interval
    return [read(var) for var in jaxpr.outvars]


def action_range(act: Callable, state: Any, key: jax.Array, context: Any) -> tuple[Interval, Any]:
    """Trace ``act(state, key, context)`` (abstract shapes suffice) once.

    Returns
    -------
    (the inclusive range (lo, hi) of the action it returns, or None where the program does not bound
    it; the abstract outputs of ``act``, as ``jax.eval_shape`` gives them). Errors of the trace
    (shape mismatches) propagate.
    """
    closed, shapes = jax.make_jaxpr(act, return_shape=True)(state, key, context)
    try:
        interval = jaxpr_output_range(closed)[0]
    except Exception:  # noqa: BLE001 - an unfamiliar program: the range is unknown, never guessed
        interval = None
    return interval, shapes
