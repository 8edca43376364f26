"""Power-scaling sensitivity: a prior-dominated posterior is more prior-sensitive than a data-dominated one."""

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from scipy.stats import norm

from structbandits.diagnostics.sensitivity import log_prior_draws, power_scaling_sensitivity
from structbandits.errors import ValidationError
from structbandits.inference.mcmc import nuts_sampler


def normal_mean(y, prior_scale=1.0, noise_scale=1.0):
    mu = numpyro.sample("mu", dist.Normal(0.0, prior_scale))
    with numpyro.plate("obs", y.shape[0]):
        numpyro.sample("y", dist.Normal(mu, noise_scale), obs=y)


Y = 2.0 + np.asarray(jax.random.normal(jax.random.PRNGKey(1), (5,)))


def test_log_prior_draws_match_the_closed_form_density():
    mu = np.linspace(-2.0, 3.0, 6).reshape(2, 3)
    values = log_prior_draws(normal_mean, {"mu": mu}, {"y": Y, "prior_scale": 2.0})
    np.testing.assert_allclose(values["mu"], norm.logpdf(mu, scale=2.0), rtol=1e-12)
    with pytest.raises(ValidationError, match="draws: expected arrays shaped"):
        log_prior_draws(normal_mean, {"mu": mu.ravel()}, {"y": Y})


@pytest.mark.slow
def test_little_data_is_prior_sensitive_and_much_data_is_not():
    # Same shapes, so one compiled sampler serves both: noise 10 makes five points nearly
    # uninformative (posterior precision 1.05, mostly prior); noise 0.1 makes them decisive (501).
    sampler = nuts_sampler(normal_mean, num_warmup=300, num_samples=1000, num_chains=2)
    prior_dominated = power_scaling_sensitivity(normal_mean, {"y": Y, "noise_scale": 10.0}, sampler=sampler)
    data_dominated = power_scaling_sensitivity(normal_mean, {"y": Y, "noise_scale": 0.1}, sampler=sampler)
    assert list(prior_dominated.index) == ["mu"]
    assert prior_dominated.loc["mu", "prior"] > 0.05 > data_dominated.loc["mu", "prior"]
    assert prior_dominated.loc["mu", "prior"] > 4 * data_dominated.loc["mu", "prior"]
    assert data_dominated.loc["mu", "likelihood"] > 0.05 > prior_dominated.loc["mu", "likelihood"]
    assert prior_dominated.loc["mu", "diagnosis"] == "strong prior / weak likelihood"
    assert data_dominated.loc["mu", "diagnosis"] == "-"
    with pytest.raises(ValidationError, match="sampler: expected a NUTS sampler built for this model"):
        power_scaling_sensitivity(lambda y: None, {"y": Y}, sampler=sampler)
