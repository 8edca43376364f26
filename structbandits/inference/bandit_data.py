"""Shape and value checks of the data of the bandit programs, for ``posterior(model, data)``.

The closed forms index arms by ``actions`` and multiply contexts into per-arm parameters; inside
JAX an out-of-range arm index is clamped and a mis-shaped context broadcasts, so without these
checks a wrong input gives a silently wrong posterior instead of an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from structbandits.errors import ValidationError, check_finite, check_positive, check_positive_definite, check_shape

__all__ = ["check_linear_bandit_data", "check_mixed_effect_data", "check_round_lengths"]


ROUND_ARGUMENTS = ("contexts", "actions", "rewards")


def check_round_lengths(data: Mapping[str, Any]) -> None:
    """The per-round arguments present (``contexts`` — every leaf of a dict —, ``actions``,
    ``rewards``) have one leading length; a mismatch names the argument(s) that differ from the rest."""
    lengths: dict[str, int] = {}
    for name in ROUND_ARGUMENTS:
        value = data.get(name)
        leaves = value.items() if isinstance(value, Mapping) else [(None, value)] if value is not None else []
        for key, leaf in leaves:
            label = f"data[{name!r}]" + (f"[{key!r}]" if key is not None else "")
            shape = np.shape(leaf)
            if not shape:
                raise ValidationError(f"{label}: expected one entry per round (a leading round axis), got a scalar")
            lengths[label] = shape[0]
    if len(set(lengths.values())) > 1:
        values = list(lengths.values())
        common = max(set(values), key=values.count)
        odd = [label for label, n in lengths.items() if n != common] if values.count(common) > 1 else list(lengths)
        others = ", ".join(f"{label} has {n}" for label, n in lengths.items() if label not in odd)
        blamed = ", ".join(f"{label} has {lengths[label]}" for label in odd)
        raise ValidationError(f"{odd[0]}: expected the same number of rounds as the other per-round arguments; "
                              f"{blamed}" + (f", while {others}" if others else ""))


def _check_rounds(data: Mapping[str, Any], num_arms: int, d: int, *, binary: bool = False) -> None:
    rewards = check_finite("data['rewards']", data["rewards"])
    if rewards.ndim != 1:
        raise ValidationError(f"data['rewards']: expected shape (n,), got shape {rewards.shape}")
    n = rewards.shape[0]
    check_shape("data['contexts']", data["contexts"], (n, d))
    actions = check_shape("data['actions']", data["actions"], (n,))
    if n and (actions.min() < 0 or actions.max() >= num_arms):
        raise ValidationError(f"data['actions']: expected arm indices in [0, {num_arms}), "
                              f"got values in [{actions.min()}, {actions.max()}]")
    if binary and not np.all((rewards == 0) | (rewards == 1)):
        raise ValidationError(f"data['rewards']: expected binary rewards (0 or 1), got values such as "
                              f"{rewards[(rewards != 0) & (rewards != 1)][0]}")


def check_linear_bandit_data(data: Mapping[str, Any]) -> None:
    """``linear_bandit``: prior_mean (K, d), prior_cov (K, d, d) positive definite, noise_scale > 0,
    contexts (n, d), actions (n,) in [0, K), rewards (n,)."""
    mean = check_finite("data['prior_mean']", data["prior_mean"])
    if mean.ndim != 2:
        raise ValidationError(f"data['prior_mean']: expected shape (K, d), got shape {mean.shape}")
    num_arms, d = mean.shape
    check_positive_definite("data['prior_cov']", check_shape("data['prior_cov']", data["prior_cov"], (num_arms, d, d)))
    check_positive("data['noise_scale']", check_shape("data['noise_scale']", data["noise_scale"], ()))
    _check_rounds(data, num_arms, d)


def check_mixed_effect_data(data: Mapping[str, Any], *, binary: bool = False) -> None:
    """``mixed_effect_linear`` / ``_logistic`` (``binary``): mixing (K, L), effect_mean (L, d),
    effect_cov (L·d, L·d) and action_cov (K, d, d) positive definite, noise_scale > 0 (linear),
    contexts (n, d), actions (n,) in [0, K), rewards (n,) (0/1 when ``binary``)."""
    mixing = check_finite("data['mixing']", data["mixing"])
    if mixing.ndim != 2:
        raise ValidationError(f"data['mixing']: expected shape (K, L), got shape {mixing.shape}")
    num_arms, num_effects = mixing.shape
    effect_mean = check_finite("data['effect_mean']", data["effect_mean"])
    if effect_mean.ndim != 2 or effect_mean.shape[0] != num_effects:
        raise ValidationError(f"data['effect_mean']: expected shape ({num_effects}, d), got shape {effect_mean.shape}")
    d = effect_mean.shape[1]
    check_positive_definite("data['effect_cov']", check_shape("data['effect_cov']", data["effect_cov"],
                                                              (num_effects * d, num_effects * d)))
    check_positive_definite("data['action_cov']", check_shape("data['action_cov']", data["action_cov"], (num_arms, d, d)))
    if not binary:
        check_positive("data['noise_scale']", check_shape("data['noise_scale']", data["noise_scale"], ()))
    _check_rounds(data, num_arms, d, binary=binary)
