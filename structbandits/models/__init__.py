"""NumPyro programs: the single source of truth for every generative model.

Belongs here: plain functions using ``numpyro.sample`` and ``numpyro.plate`` that declare priors,
latent parameters and observed sites. The same program simulates ground truth (``Predictive``),
gives the reference posterior (NUTS) and is matched by the closed forms in ``inference``.
Does not belong here: inference code, decision rules, or anything with hidden state.
"""

from structbandits.models.drifting import (changepoint_linear_bandit, habituation_linear_bandit,
                                          random_walk_linear_bandit)
from structbandits.models.linear import linear_bandit, linear_bandit_nig
from structbandits.models.mixed_effect import marginal_action_prior, mixed_effect_linear, mixed_effect_logistic
from structbandits.models.random_effects import random_intercept_logistic

__all__ = ["changepoint_linear_bandit", "habituation_linear_bandit", "linear_bandit", "linear_bandit_nig",
           "marginal_action_prior", "mixed_effect_linear", "mixed_effect_logistic", "random_intercept_logistic",
           "random_walk_linear_bandit"]
