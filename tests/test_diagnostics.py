import numpy as np
import pytest

from structbandits.diagnostics import from_draws, summary
from structbandits.diagnostics.arviz_adapter import SUMMARY_COLUMNS


def test_from_draws_and_summary_on_known_draws():
    rng = np.random.default_rng(0)
    draws = {"theta": rng.normal(loc=[1.0, -2.0], scale=[0.5, 2.0], size=(4, 2000, 2))}
    data = from_draws(draws, dims={"theta": ["feature"]}, coords={"feature": ["a", "b"]})
    table = summary(data)
    assert list(table.columns) == SUMMARY_COLUMNS and len(table) == 2
    np.testing.assert_allclose(table["mean"], [1.0, -2.0], atol=0.1)
    np.testing.assert_allclose(table["sd"], [0.5, 2.0], rtol=0.05)
    assert (table["r_hat"] < 1.01).all() and (table["ess_bulk"] > 4000).all()  # independent draws


def test_summary_flags_chains_that_disagree():
    rng = np.random.default_rng(1)
    chains = rng.normal(size=(2, 500)) + np.array([[0.0], [5.0]])
    table = summary(from_draws({"mu": chains}))
    assert table.loc["mu", "r_hat"] > 1.5


def test_agent_posteriors_convert_with_named_dims():
    import jax
    import jax.numpy as jnp
    from mixed_effect_oracles import NOISE, closed_form, make_problem

    from structbandits.agents import lin_ts, mets, uniform_random
    from structbandits.diagnostics import policy_to_arviz
    from structbandits.errors import ValidationError

    problem = make_problem(0)
    (mixing, effect_mean, effect_cov, action_cov), contexts, actions, rewards = problem
    policy = mets(mixing, effect_mean, effect_cov, action_cov, NOISE)
    state = jax.lax.scan(lambda s, d: (policy.update(s, *d), None), policy.init(jax.random.PRNGKey(0)),
                         (contexts, actions, rewards))[0]
    idata = policy_to_arviz(policy, state, num_draws=5_000)  # four chains
    assert dict(idata.posterior["psi"].sizes) == {"chain": 4, "draw": 5_000, "effect": 2, "feature": 2}
    assert dict(idata.posterior["theta"].sizes) == {"chain": 4, "draw": 5_000, "action": 3, "feature": 2}
    _, marginals, *_ = closed_form(problem)
    theta = idata.posterior["theta"].values.reshape(20_000, 3, 2)
    for arm, (mean, cov) in enumerate(marginals):  # the draws have the closed-form marginal moments
        np.testing.assert_allclose(theta[:, arm].mean(0), mean, atol=5 * np.sqrt(np.diag(cov).max() / 20_000))
        np.testing.assert_allclose(np.cov(theta[:, arm].T), cov, rtol=0.05, atol=0.02 * np.abs(cov).max())
    lints = lin_ts(jnp.zeros(2), jnp.eye(2), 1.0, num_actions=3)
    assert dict(policy_to_arviz(lints, lints.init(None), num_draws=10).posterior["theta"].sizes)["action"] == 3
    with pytest.raises(ValidationError, match="policy: expected a Policy with posterior_draws"):
        policy_to_arviz(uniform_random(3), None)
