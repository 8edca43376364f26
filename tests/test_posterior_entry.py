"""``inference.posterior``: the closed forms, Laplace and NUTS through one entry point."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from mixed_effect_oracles import D, K, L, NOISE, closed_form, make_problem
from numpyro.infer import Predictive

from structbandits.diagnostics import posterior_to_arviz
from structbandits.errors import ValidationError
from structbandits.inference import posterior
from structbandits.inference.conjugate import gaussian_covariance, gaussian_mean
from structbandits.models import linear_bandit, mixed_effect_linear, mixed_effect_logistic


def mixed_data(seed=0):
    (mixing, effect_mean, effect_cov, action_cov), contexts, actions, rewards = make_problem(seed)
    return dict(mixing=mixing, effect_mean=effect_mean, effect_cov=effect_cov, action_cov=action_cov,
                noise_scale=NOISE, contexts=contexts, actions=actions, rewards=rewards)


def test_auto_uses_the_closed_form_with_exact_moments_and_named_draws():
    data = mixed_data()
    result = posterior(mixed_effect_linear, data, num_draws=25_000)  # × 2 chains of independent draws
    assert result.method == "conjugate"
    effects, marginals, *_ = closed_form(make_problem(0))
    np.testing.assert_allclose(result.mean("psi"), gaussian_mean(effects), rtol=1e-10)
    np.testing.assert_allclose(result.moments["psi"][1], gaussian_covariance(effects), rtol=1e-10)
    np.testing.assert_allclose(result.moments["theta"][1], np.stack([c for _, c in marginals]), rtol=1e-10)
    assert result.draws["psi"].shape == (2, 25_000, L * D) and result.draws["theta"].shape == (2, 25_000, K, D)
    sd = np.sqrt(np.diagonal(result.moments["theta"][1], axis1=1, axis2=2))
    assert np.all(np.abs(result.draws["theta"].mean(axis=(0, 1)) - result.mean("theta")) < 4 * sd / np.sqrt(50_000))
    idata = posterior_to_arviz(result)
    assert dict(idata.posterior["theta"].sizes) == {"chain": 2, "draw": 25_000, "action": K, "feature": D}


def test_linear_bandit_closed_form_per_arm():
    rng = np.random.default_rng(0)
    prior_mean, prior_cov = jnp.zeros((3, 2)), jnp.broadcast_to(jnp.eye(2), (3, 2, 2))
    contexts, actions = jnp.asarray(rng.uniform(-1, 1, (40, 2))), jnp.asarray(rng.integers(0, 2, 40))  # arm 2 unseen
    rewards = Predictive(linear_bandit, num_samples=1)(jax.random.PRNGKey(0), prior_mean, prior_cov, 0.5, contexts, actions)["reward"][0]
    result = posterior(linear_bandit, dict(prior_mean=prior_mean, prior_cov=prior_cov, noise_scale=0.5,
                                           contexts=contexts, actions=actions, rewards=rewards), method="conjugate")
    mean, cov = result.moments["theta"]
    np.testing.assert_allclose(mean[2], 0.0, atol=1e-12)  # no data: the prior
    np.testing.assert_allclose(cov[2], np.eye(2), rtol=1e-10)
    x, y = np.asarray(contexts)[np.asarray(actions) == 0], np.asarray(rewards)[np.asarray(actions) == 0]
    precision = np.eye(2) + x.T @ x / 0.25
    np.testing.assert_allclose(mean[0], np.linalg.solve(precision, x.T @ y / 0.25), rtol=1e-9)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rewards": None}, r"data\['rewards'\]: required by mixed_effect_linear"),
        ({"bogus": 1.0}, r"data\['bogus'\]: not an argument of mixed_effect_linear"),
        ({"rewards": np.full(50, np.nan)}, r"data\['rewards'\]: expected finite values"),
        ({"actions": np.zeros(50)}, r"data\['actions'\]: expected integer arm indices"),
    ],
)
def test_bad_data_is_named(change, message):
    with pytest.raises(ValidationError, match=message):
        posterior(mixed_effect_linear, {**mixed_data(), **change})


def test_bad_method():
    with pytest.raises(ValidationError, match="method: expected one of auto, conjugate, laplace, nuts, got 'mcmc'"):
        posterior(mixed_effect_linear, mixed_data(), method="mcmc")
    with pytest.raises(ValidationError, match="method: no closed form is registered for mixed_effect_logistic"):
        data = {k: v for k, v in mixed_data().items() if k != "noise_scale"}
        posterior(mixed_effect_logistic, {**data, "rewards": (np.asarray(data["rewards"]) > 0).astype(float)}, method="conjugate")


def test_the_logistic_pseudo_observation_laplace_reports_its_convergence():
    data = mixed_data(1)
    data = {**{k: v for k, v in data.items() if k != "noise_scale"}, "rewards": (np.asarray(data["rewards"]) > 0) * 1.0}
    result = posterior(mixed_effect_logistic, data, num_draws=10)
    report = result.diagnostics
    assert result.method == "laplace" and report["converged"] and report["newton_decrement"] < 1e-6
    assert report["gradient_norm"] < 1e-6 and result.model is mixed_effect_logistic
