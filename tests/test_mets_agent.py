"""The meTS agents: incremental state equals the batch closed form; act samples the joint posterior."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from mixed_effect_oracles import D, K, L, N, NOISE, closed_form, dense_joint_posterior, make_problem
from numpyro.infer import Predictive

from structbandits.agents import hier_ts, lin_ts, mets
from structbandits.errors import ValidationError
from structbandits.inference.conjugate import effect_evidence, gaussian_from_moments
from structbandits.models import marginal_action_prior, mixed_effect_linear


def feed(policy, contexts, actions, rewards):
    def step(state, data):
        return policy.update(state, *data), None

    state, _ = jax.lax.scan(step, policy.init(jax.random.PRNGKey(0)), (contexts, actions, rewards))
    return state


@pytest.mark.parametrize("per_arm_contexts", [False, True])
def test_incremental_effect_posterior_equals_batch_closed_form(per_arm_contexts):
    problem = make_problem(0, empty_arm=2)
    (mixing, effect_mean, effect_cov, action_cov), contexts, actions, rewards = problem
    policy = mets(mixing, effect_mean, effect_cov, action_cov, NOISE)
    if per_arm_contexts:  # (N, K, d): only the pulled arm's row matters to the posterior
        noise = jax.random.normal(jax.random.PRNGKey(1), (N, K, D))
        contexts_in = noise.at[jnp.arange(N), actions].set(contexts)
    else:
        contexts_in = contexts
    state = feed(policy, contexts_in, actions, rewards)
    effects, _, action_chol, grams, moments = closed_form(problem)
    np.testing.assert_allclose(state.effect_precision, effects.precision_chol @ effects.precision_chol.T, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(state.effect_info, effects.info, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(state.gram, grams, atol=1e-10)
    conditional = action_chol @ np.swapaxes(action_chol, 1, 2) + grams
    np.testing.assert_allclose(state.conditional_chol @ np.swapaxes(state.conditional_chol, 1, 2), conditional, rtol=1e-9)


def test_factored_state_is_the_block_diagonal_posterior():
    problem = make_problem(1)
    (mixing, effect_mean, effect_cov, action_cov), contexts, actions, rewards = problem
    state = feed(mets(mixing, effect_mean, effect_cov, action_cov, NOISE, factored=True), contexts, actions, rewards)
    _, _, action_chol, grams, moments = closed_form(problem)
    evidence_precision, evidence_info = jax.vmap(effect_evidence)(action_chol, grams, moments)
    for l in range(L):
        block = slice(l * D, (l + 1) * D)
        prior = gaussian_from_moments(effect_mean[l], effect_cov[block, block])
        expected = prior.precision_chol @ prior.precision_chol.T + jnp.einsum("k,kab->ab", mixing[:, l] ** 2, evidence_precision)
        np.testing.assert_allclose(state.effect_precision[l], expected, rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(state.effect_info[l], prior.info + mixing[:, l] @ evidence_info, rtol=1e-9, atol=1e-10)


def test_act_picks_arms_with_the_joint_posterior_probabilities():
    """meTS picks arm i with probability P(i = argmax_j x_jᵀθ_j) under the dense joint posterior;
    the oracle is a large Monte-Carlo draw from that joint. (At these contexts the cross-arm
    correlation moves the probabilities by less than the tolerance, so this checks the per-arm
    draws; the coupling through Ψ is checked exactly in test_mixed_effect_posterior.py.)"""
    problem = make_problem(2)
    (mixing, effect_mean, effect_cov, action_cov), contexts, actions, rewards = problem
    policy = mets(mixing, effect_mean, effect_cov, action_cov, NOISE)
    state = feed(policy, contexts, actions, rewards)
    mean, cov = dense_joint_posterior(problem)
    arm_means = mean[L * D:].reshape(K, D)
    # Contexts orthogonal to each arm's posterior mean: every expected score is 0, so the choice is
    # driven by the posterior spread and the cross-arm correlation that Ψ induces.
    context = jnp.asarray(np.stack([-arm_means[:, 1], arm_means[:, 0]], axis=1) / np.linalg.norm(arm_means, axis=1, keepdims=True))
    num_acts = 20_000
    chosen, _ = jax.jit(jax.vmap(policy.act, (None, 0, None)))(state, jax.random.split(jax.random.PRNGKey(3), num_acts), context)
    frequency = np.bincount(np.asarray(chosen), minlength=K) / num_acts

    theta = np.random.default_rng(0).multivariate_normal(mean[L * D:], cov[L * D:, L * D:], size=400_000).reshape(-1, K, D)
    oracle = np.bincount(np.argmax(np.sum(theta * np.asarray(context), -1), 1), minlength=K) / len(theta)
    assert oracle.max() < 0.95, "pick a context where the choice is uncertain, or the test cannot fail"
    tolerance = 4 * np.sqrt(oracle * (1 - oracle) / num_acts) + 2e-3
    assert np.all(np.abs(frequency - oracle) < tolerance), (frequency, oracle)


def test_marginal_action_prior_matches_prior_draws():
    (mixing, effect_mean, effect_cov, action_cov), *_ = make_problem(4)
    draws = Predictive(mixed_effect_linear, num_samples=100_000)(jax.random.PRNGKey(0), mixing, effect_mean, effect_cov, action_cov, NOISE)
    theta = np.asarray(draws["theta"])
    means, covs = marginal_action_prior(mixing, effect_mean, effect_cov, action_cov)
    sd = np.sqrt(np.diagonal(covs, axis1=1, axis2=2))
    assert np.all(np.abs(theta.mean(0) - means) < 4 * sd / np.sqrt(len(theta)))
    for i in range(K):
        np.testing.assert_allclose(np.cov(theta[:, i].T), covs[i], atol=0.03 * np.abs(covs[i]).max())


def test_hier_ts_is_mets_with_the_average_effect():
    (mixing, effect_mean, effect_cov, action_cov), *_ = make_problem(5)
    state = hier_ts(effect_mean, effect_cov, action_cov, NOISE, num_actions=K).init(jax.random.PRNGKey(0))
    average = np.kron(np.ones(L), np.eye(D)) / L  # (d, L d): vec Ψ -> mean of the effects
    expected_cov = average @ np.asarray(effect_cov) @ average.T
    np.testing.assert_allclose(np.linalg.inv(state.effect_precision), expected_cov, rtol=1e-9)
    np.testing.assert_allclose(np.linalg.solve(state.effect_precision, state.effect_info), np.asarray(effect_mean).mean(0), rtol=1e-9)


def test_mets_learns_faster_than_structure_blind_lints():
    """On data from the program with many arms and few pulls each, meTS's posterior-mean arm ranking is better."""
    rng = np.random.default_rng(6)
    k, num_effects, d, n = 30, 2, 2, 120
    mixing = jnp.asarray(rng.uniform(-1, 1, (k, num_effects)))
    effect_mean, effect_cov = jnp.zeros((num_effects, d)), 3.0 * jnp.eye(num_effects * d)
    action_cov = 0.1 * jnp.eye(d)
    contexts = jnp.asarray(rng.uniform(-1, 1, (n, d)))
    actions = jnp.asarray(np.arange(n) % k)
    draw = Predictive(mixed_effect_linear, num_samples=1)(jax.random.PRNGKey(7), mixing, effect_mean, effect_cov, action_cov, 1.0, contexts, actions)
    truth = np.asarray(draw["theta"][0])
    structured = feed(mets(mixing, effect_mean, effect_cov, action_cov, 1.0), contexts, actions, draw["reward"][0])
    blind = feed(lin_ts(*marginal_action_prior(mixing, effect_mean, effect_cov, jnp.broadcast_to(action_cov, (k, d, d))), 1.0),
                 contexts, actions, draw["reward"][0])
    effect_mean_post = np.linalg.solve(structured.effect_precision, structured.effect_info).reshape(num_effects, d)
    info = jnp.einsum("ab,kb->ka", np.linalg.inv(np.asarray(action_cov)), np.asarray(mixing) @ effect_mean_post) + structured.moment
    mets_mean = np.linalg.solve(np.asarray(structured.conditional_chol @ jnp.swapaxes(structured.conditional_chol, 1, 2)), np.asarray(info)[..., None])[..., 0]
    lints_mean = np.asarray(jax.vmap(lambda c, h: jax.scipy.linalg.cho_solve((c, True), h))(*blind.posterior))
    assert np.mean((mets_mean - truth) ** 2) < 0.5 * np.mean((lints_mean - truth) ** 2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(mixing=np.ones((3, 3))), r"mixing: expected shape \(K, L\) with L = 2 effects, got \(3, 3\)"),
        (dict(effect_mean=np.zeros(4)), r"effect_mean: expected shape \(L, d\), got \(4,\)"),
        (dict(effect_cov=np.eye(3)), r"effect_cov: expected shape \(4, 4\)"),
        (dict(action_cov=np.eye(3)), r"action_cov: expected shape \(2, 2\) or \(3, 2, 2\)"),
        (dict(noise_scale=-1.0), "noise_scale: expected values > 0"),
        (dict(mixing=np.full((3, 2), np.nan)), "mixing: expected finite values"),
    ],
)
def test_mets_rejects_bad_arguments(kwargs, message):
    arguments = dict(mixing=np.ones((3, 2)), effect_mean=np.zeros((2, 2)), effect_cov=np.eye(4), action_cov=np.eye(2), noise_scale=1.0)
    with pytest.raises(ValidationError, match=message):
        mets(**{**arguments, **kwargs})


def test_mets_beats_structure_blind_agents_on_the_mixed_effect_bandit():
    from structbandits.envs import mixed_effect_bandit
    from structbandits.experiments import build_components, resolve_config, run_experiment, summarize

    config = resolve_config({"horizon": 150, "seeds": 4, "envs": {"mixed_effect": {"num_actions": 40}},
                             "agents": {"mets": {}, "hierts": {}, "lints-matched": {}}})
    envs, agents = build_components(config)
    table = summarize(run_experiment(agents, envs, horizon=150, num_seeds=4, progress=False)).set_index("agent")
    regret = table["final_cumulative_regret"]
    assert regret["mets"] < 0.8 * regret["lints-matched"] and regret["mets"] < 0.8 * regret["hierts"], regret


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), factored=st.booleans())
def test_effect_precision_never_decreases_with_data(seed, factored):
    (mixing, effect_mean, effect_cov, action_cov), contexts, actions, rewards = make_problem(seed % 50)
    policy = mets(mixing, effect_mean, effect_cov, action_cov, NOISE, factored=factored)
    update = jax.jit(policy.update)
    state = policy.init(jax.random.PRNGKey(0))
    for t in range(12):
        new = update(state, contexts[t], actions[t], rewards[t])
        growth = np.asarray(new.effect_precision - state.effect_precision)
        assert np.linalg.eigvalsh(growth).min() >= -1e-9  # Loewner order: P_{t+1} ⪰ P_t
        state = new
