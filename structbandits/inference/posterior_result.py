"""``PosteriorResult``, what ``inference.posterior`` returns (moved from ``inference.posterior``, which
re-exports it), with the two helpers it shares with ``posterior``: ``_name`` (a program's name for
messages) and ``_unwrap`` (a ``functools.partial`` of a program as the program and data).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from structbandits.errors import ValidationError

__all__ = ["PosteriorResult"]


@dataclass(frozen=True)
class PosteriorResult:
    """Named posterior draws shaped (chain, draw, ...), with exact moments where a closed form gave them.

    Attributes
    ----------
    method : the method that produced the draws: "conjugate", "laplace" or "nuts".
    draws : site name -> array (chains, draws, *site shape). For "conjugate" and "laplace" the draws
        are independent (exact, or from the Laplace Gaussian), split into ``num_chains`` chains so
        that ArviZ's R-hat is defined (≈ 1 by construction); for "nuts", the Markov chains.
    moments : site name -> (mean, covariance) for closed forms (covariance per arm for ``theta``);
        empty for sampling methods.
    mcmc : the ``numpyro.infer.MCMC`` object for NUTS (carries the sample statistics), else None.
    model : the program (a ``functools.partial`` unwrapped to its function), or None.
    fallback_reason : why "auto" did not use a cheaper method, in words (None when it did not fall back).
    diagnostics : the method's convergence report: for Laplace ``converged``, ``gradient_norm``,
        ``iterations``, ``positive_definite``, ``min_eigenvalue``, ``newton_decrement`` (posterior
        sds from the mode), ``potential``, ``pareto_k`` (the Pareto k̂ of the importance ratios
        p/q at the Laplace draws, ``inference.importance``: > 0.7 means a poor fit) and
        ``importance_mean_shift`` (how far importance sampling moves the means, in sds); for NUTS ``r_hat_max``, ``ess_bulk_min``, ``divergences``,
        ``converged``; empty for closed forms (exact).
    """

    method: str
    draws: dict[str, np.ndarray]
    moments: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    mcmc: Any = None
    model: Callable | None = None
    fallback_reason: str | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)

    def mean(self, site: str) -> np.ndarray:
        """Posterior mean of ``site``: exact for closed forms, the draws' mean otherwise."""
        if site in self.moments:
            return self.moments[site][0]
        return self.draws[site].mean(axis=(0, 1))

    def predictive_draws(self, model: Callable, data: Mapping[str, Any], *, key: jax.Array | None = None,
                         site: str = "reward") -> np.ndarray:
        """Posterior predictive draws of the observed ``site`` at ``data``: (chains, draws, *site shape).

        Every posterior draw is substituted into ``model`` (``numpyro.infer.Predictive``) and one
        ``site`` value is drawn from it: the same program, so any program works, closed form or not.
        ``diagnostics.posterior_predictive_to_arviz`` wraps these draws as ArviZ data.

        Parameters
        ----------
        model : the program this result is a posterior of.
        data : its keyword arguments (hyperparameters, ``contexts``, ``actions``, ...) at which to
            predict; observed ``rewards`` there, if any, are not conditioned on.
        key : PRNG key (default ``PRNGKey(0)``).
        site : the observed site to draw.
        """
        from numpyro.infer import Predictive

        model, data = _unwrap(model, data)
        parameters = inspect.signature(model).parameters
        unknown = sorted(set(data) - set(parameters))
        if unknown:
            raise ValidationError(f"data[{unknown[0]!r}]: not an argument of {_name(model)}; "
                                  f"expected some of: {', '.join(parameters)}")
        inputs = {name: value for name, value in data.items() if name != "rewards"}
        chains, draws = next(iter(self.draws.values())).shape[:2]
        flat = {name: jnp.asarray(value).reshape((chains * draws,) + value.shape[2:]) for name, value in self.draws.items()}
        key = jax.random.PRNGKey(0) if key is None else key
        predicted = Predictive(model, posterior_samples=flat, return_sites=[site])(key, **inputs)
        if site not in predicted:
            raise ValidationError(f"site: expected a sample site of the program at this data, got {site!r}")
        value = np.asarray(predicted[site])
        return value.reshape((chains, draws) + value.shape[1:])


def _name(model: Callable) -> str:
    return getattr(model, "__name__", None) or type(model).__name__


def _unwrap(model: Callable, data: Mapping[str, Any]) -> tuple[Callable, dict[str, Any]]:
    """A ``functools.partial`` of a program as the program and data: its bound arguments join ``data``."""
    data = dict(data)
    while isinstance(model, functools.partial):
        names = list(inspect.signature(model.func).parameters)
        bound = dict(zip(names, model.args)) | dict(model.keywords)
        clash = sorted(set(bound) & set(data))
        if len(model.args) > len(names):
            raise ValidationError(f"model: the partial binds {len(model.args)} positional arguments, "
                                  f"{_name(model.func)} takes {len(names)}")
        if clash and any(name in dict(zip(names, model.args)) for name in clash):
            raise ValidationError(f"data[{clash[0]!r}]: already bound by the functools.partial passed as model")
        model, data = model.func, bound | data  # keywords given at call time win, as in Python
    return model, data
