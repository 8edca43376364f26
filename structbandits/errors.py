"""Errors raised at the public boundary and the small checks that raise them.

Every public function validates its inputs here, before anything is traced by JAX, so a user sees
which argument was wrong, what was expected and what was received, instead of a shape error deep
inside a jitted function. Inside jitted code the validated inputs are trusted.

Each helper returns the value converted to a NumPy array, so callers can write
``prior_cov = check_positive_definite("prior_cov", prior_cov)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "ConvergenceWarning",
    "ValidationError",
    "check_finite",
    "check_positive",
    "check_positive_definite",
    "check_shape",
    "check_simplex",
    "check_integer",
    "check_num_elements",
]

MAX_ELEMENTS = 10**8  # arrays larger than this (800 MB in float64) are a typo in a size, not a study


class ValidationError(ValueError):
    """A public argument (or configuration key) has the wrong shape, type or value.

    The message names the argument, what was expected and what was received.
    """


class ConvergenceWarning(UserWarning):
    """An approximation or sampler did not meet its convergence criteria; the message says which
    and by how much (a result is still returned, so nothing is lost, but it is not trusted)."""


def _as_float_array(name: str, value) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValidationError(f"{name}: expected numbers, got {value!r}") from None
    return arr


def check_shape(name: str, value, shape: Sequence[int | None]) -> np.ndarray:
    """Check that ``value`` has ``shape``; ``None`` in ``shape`` matches any length on that axis."""
    arr = np.asarray(value)
    expected = "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"
    if arr.ndim != len(shape) or any(s is not None and s != n for s, n in zip(shape, arr.shape)):
        raise ValidationError(f"{name}: expected shape {expected}, got shape {arr.shape}")
    return arr


def check_finite(name: str, value) -> np.ndarray:
    """Check that every entry of ``value`` is a finite number (no NaN, no infinity)."""
    arr = _as_float_array(name, value)
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))
        where = tuple(int(i) for i in bad[0]) if arr.ndim else ()
        raise ValidationError(
            f"{name}: expected finite values, got {arr[where] if arr.ndim else arr.item()} "
            f"at index {where} ({len(bad)} non-finite entr{'y' if len(bad) == 1 else 'ies'})"
        )
    return arr


def check_positive(name: str, value, *, allow_zero: bool = False) -> np.ndarray:
    """Check that ``value`` is finite and > 0 (or >= 0 with ``allow_zero``)."""
    arr = check_finite(name, value)
    ok = arr >= 0 if allow_zero else arr > 0
    if not np.all(ok):
        bound = ">= 0" if allow_zero else "> 0"
        got = arr.item() if arr.ndim == 0 else f"a minimum of {arr.min()}"
        raise ValidationError(f"{name}: expected values {bound}, got {got}")
    return arr


def check_integer(name: str, value, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """Check that ``value`` is an integer (bools rejected) within ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        # a float is accepted only where it is an integer exactly (1e300.is_integer() is True too)
        if isinstance(value, (float, np.floating)) and float(value).is_integer() and abs(value) < 2**53:
            value = int(value)
        else:
            raise ValidationError(f"{name}: expected an integer, got {value!r}")
    value = int(value)
    if not -(2**63) <= value < 2**63:  # beyond int64 every array library overflows, some abort the process
        raise ValidationError(f"{name}: expected an integer that fits in 64 bits, got {value}")
    if minimum is not None and value < minimum:
        raise ValidationError(f"{name}: expected an integer >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValidationError(f"{name}: expected an integer <= {maximum}, got {value}")
    return value


def check_simplex(name: str, value, *, atol: float = 1e-6) -> np.ndarray:
    """Check that the last axis of ``value`` holds probabilities: entries in [0, 1] summing to one."""
    arr = check_finite(name, value)
    if arr.ndim == 0:
        raise ValidationError(f"{name}: expected probabilities along a last axis, got a scalar {arr.item()}")
    if np.any(arr < -atol) or np.any(arr > 1 + atol):
        raise ValidationError(f"{name}: expected probabilities in [0, 1], got values in [{arr.min()}, {arr.max()}]")
    sums = arr.sum(axis=-1)
    off = np.abs(sums - 1.0) > atol
    if np.any(off):
        where = tuple(int(i) for i in np.argwhere(off)[0])
        raise ValidationError(
            f"{name}: expected probabilities summing to 1 (tolerance {atol}) along the last axis, "
            f"got a sum of {np.asarray(sums)[where] if where else float(sums)}"
            + (f" at index {where}" if where else "")
        )
    return arr


def check_positive_definite(name: str, value) -> np.ndarray:
    """Check that ``value`` is a finite, symmetric, positive-definite matrix (or a stack of them)."""
    arr = check_finite(name, value)
    if arr.ndim < 2 or arr.shape[-1] != arr.shape[-2]:
        raise ValidationError(f"{name}: expected a square matrix (..., d, d), got shape {arr.shape}")
    scale = max(1.0, float(np.abs(arr).max(initial=0.0)))
    if not np.allclose(arr, np.swapaxes(arr, -1, -2), rtol=1e-8, atol=1e-10 * scale):
        raise ValidationError(f"{name}: expected a symmetric matrix, got an asymmetric one")
    try:
        np.linalg.cholesky(arr)
    except np.linalg.LinAlgError:
        smallest = float(np.linalg.eigvalsh(arr).min())
        raise ValidationError(
            f"{name}: expected a positive-definite matrix, got one with smallest eigenvalue {smallest:.3g}"
        ) from None
    return arr


def check_num_elements(name: str, shape: Sequence[int], *, limit: int = MAX_ELEMENTS) -> None:
    """Check that an array of ``shape`` has at most ``limit`` elements.

    Sizes such as ``num_actions = 10**12`` pass every per-argument check but would exhaust memory (or
    overflow XLA's shape arithmetic and abort the process); they are rejected here instead.
    """
    count = math.prod(int(n) for n in shape)
    if count > limit:
        raise ValidationError(f"{name}: expected sizes giving at most {limit:.0e} array entries, got shape "
                              f"{tuple(int(n) for n in shape)} (about 1e{len(str(count)) - 1} entries)")
