"""The meTS agents against independent answers: the incremental state is the dense joint Gaussian posterior of
(Ψ, θ_1..θ_K) computed in NumPy; act and posterior_draws sample that joint."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from mixed_effect_oracles import D, K, L, N, NOISE, dense_joint_posterior, make_problem
from numpyro.infer import Predictive

from structbandits.agents import hier_ts, lin_ts, mets
from structbandits.errors import ValidationError
from structbandits.models import marginal_action_prior, mixed_effect_linear


def feed(policy, contexts, actions, rewards):
    def step(state, data):
        return policy.update(state, *data), None

    state, _ = jax.lax.scan(step, policy.init(jax.random.PRNGKey(0)), (contexts, actions, rewards))
    return state


def dense_joint(problem):
    """The exact posterior of z = (vec Ψ, θ_1, ..., θ_K) as one dense Gaussian, written from the model alone.

    z = T u with independent u = (vec Ψ, η_1..η_K), Ψ ~ N(μ_Ψ, Σ_Ψ), η_i ~ N(0, Σ0_i), θ_i = Σ_l b_il ψ_l + η_i;
    y_t = h_tᵀ z + ε_t with h_t holding x_t in arm a_t's slot. Precision = Cov(z)⁻¹ + HᵀH/σ², by np.linalg.solve.
    """
    (mixing, effect_mean, effect_cov, action_cov), contexts, actions, rewards = problem
    mixing, effect_mean, effect_cov, action_cov = (np.asarray(v) for v in (mixing, effect_mean, effect_cov, action_cov))
    contexts, actions, rewards = np.asarray(contexts), np.asarray(actions), np.asarray(rewards)
    k, (num_effects, d) = len(mixing), effect_mean.shape
    size = (num_effects + k) * d
    transform = np.eye(size)
    for i in range(k):
        for l in range(num_effects):
            transform[num_effects * d + i * d:num_effects * d + (i + 1) * d, l * d:(l + 1) * d] = mixing[i, l] * np.eye(d)
    latent_cov = np.zeros((size, size))
    latent_cov[:num_effects * d, :num_effects * d] = effect_cov
    for i in range(k):
        start = num_effects * d + i * d
        latent_cov[start:start + d, start:start + d] = action_cov[i]
    prior_mean = transform @ np.concatenate([effect_mean.reshape(-1), np.zeros(k * d)])
    prior_cov = transform @ latent_cov @ transform.T
    design = np.zeros((len(rewards), size))
    for t, (x, i) in enumerate(zip(contexts, actions)):
        design[t, num_effects * d + i * d:num_effects * d + (i + 1) * d] = x
    precision = np.linalg.solve(prior_cov, np.eye(size)) + design.T @ design / NOISE**2
    mean = np.linalg.solve(precision, np.linalg.solve(prior_cov, prior_mean) + design.T @ rewards / NOISE**2)
    return mean, np.linalg.solve(precision, np.eye(size))


def agent_joint(state):
    """The joint law of (vec Ψ, θ_1..θ_K) that a dense meTS state describes (what its hierarchical draw samples):
    Ψ ~ N(P⁻¹h, P⁻¹) from (effect_precision P, effect_info h), and θ_i | Ψ ~ N(C_i⁻¹(Σ0_i⁻¹ Σ_l b_il ψ_l + B_i), C_i⁻¹)
    with C_i = L_i L_iᵀ (conditional_chol), B_i = moment, Σ0_i⁻¹ = params.action_precision."""
    mixing = np.asarray(state.params.mixing)
    k, num_effects = mixing.shape
    d = state.moment.shape[1]
    effect_cov = np.linalg.inv(np.asarray(state.effect_precision))
    effect_mean = effect_cov @ np.asarray(state.effect_info)
    chol = np.asarray(state.conditional_chol)
    conditional_cov = np.linalg.inv(chol @ np.swapaxes(chol, 1, 2))
    # θ = M vec Ψ + c + η, η ~ N(0, blockdiag C_i⁻¹)
    m = np.concatenate([conditional_cov[i] @ np.asarray(state.params.action_precision[i]) @ np.kron(mixing[i], np.eye(d))
                        for i in range(k)])
    c = np.concatenate([conditional_cov[i] @ np.asarray(state.moment[i]) for i in range(k)])
    noise_cov = np.zeros((k * d, k * d))
    for i in range(k):
        noise_cov[i * d:(i + 1) * d, i * d:(i + 1) * d] = conditional_cov[i]
    mean = np.concatenate([effect_mean, m @ effect_mean + c])
    cov = np.block([[effect_cov, effect_cov @ m.T], [m @ effect_cov, m @ effect_cov @ m.T + noise_cov]])
    return mean, cov


@pytest.mark.parametrize("per_arm_contexts", [False, True])
def test_incremental_state_is_the_dense_joint_posterior(per_arm_contexts):
    """After N updates the state's posterior of (Ψ, θ_1..θ_K) — means and the full covariance, cross-arm and
    arm-effect blocks included — equals the dense joint Gaussian posterior computed with NumPy."""
    problem = make_problem(0, empty_arm=2)
    (mixing, effect_mean, effect_cov, action_cov), contexts, actions, rewards = problem
    policy = mets(mixing, effect_mean, effect_cov, action_cov, NOISE)
    if per_arm_contexts:  # (N, K, d): only the pulled arm's row matters to the posterior
        noise = jax.random.normal(jax.random.PRNGKey(1), (N, K, D))
        contexts_in = noise.at[jnp.arange(N), actions].set(contexts)
    else:
        contexts_in = contexts
    state = feed(policy, contexts_in, actions, rewards)
    expected_mean, expected_cov = dense_joint(problem)
    mean, cov = agent_joint(state)
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(cov, expected_cov, rtol=1e-8, atol=1e-8)
    x, i = np.asarray(contexts), np.asarray(actions)
    for arm in range(K):
        rows = x[i == arm]
        np.testing.assert_allclose(state.gram[arm], rows.T @ rows / NOISE**2, atol=1e-10)
        np.testing.assert_allclose(state.moment[arm], rows.T @ np.asarray(rewards)[i == arm] / NOISE**2, atol=1e-10)
    if per_arm_contexts:
        return
    # posterior_draws samples that joint: moments of 4000 draws within Monte-Carlo error.
    draws = jax.jit(policy.posterior_draws, static_argnums=2)(state, jax.random.PRNGKey(5), 4000)
    assert draws["psi"].shape == (4000, L, D) and draws["theta"].shape == (4000, K, D)
    flat = np.concatenate([np.asarray(draws["psi"]).reshape(4000, -1), np.asarray(draws["theta"]).reshape(4000, -1)], 1)
    sd = np.sqrt(np.diag(expected_cov))
    assert np.all(np.abs(flat.mean(0) - expected_mean) < 5 * sd / np.sqrt(4000))
    correlation = np.corrcoef(flat.T) - expected_cov / np.outer(sd, sd)
    assert np.abs(correlation).max() < 0.1 and np.all(np.abs(flat.std(0) / sd - 1) < 0.1)


def test_factored_state_is_the_block_diagonal_posterior():
    """Factored meTS keeps, per effect l, the prior block Σ_Ψ[l,l] plus Σ_i b_il² P_i (information Σ_i b_il u_i),
    where P_i, u_i are arm i's evidence about its mean A_i ψ with θ_i integrated out:
    y_i ~ N(X_i A_i ψ, X_i Σ0_i X_iᵀ + σ² I), so P_i = X_iᵀ S_i⁻¹ X_i and u_i = X_iᵀ S_i⁻¹ y_i (NumPy)."""
    problem = make_problem(1)
    (mixing, effect_mean, effect_cov, action_cov), contexts, actions, rewards = problem
    state = feed(mets(mixing, effect_mean, effect_cov, action_cov, NOISE, factored=True), contexts, actions, rewards)
    x, i, y = np.asarray(contexts), np.asarray(actions), np.asarray(rewards)
    evidence = []
    for arm in range(K):
        rows = x[i == arm]
        marginal_cov = rows @ np.asarray(action_cov[arm]) @ rows.T + NOISE**2 * np.eye(len(rows))
        evidence.append((rows.T @ np.linalg.solve(marginal_cov, rows), rows.T @ np.linalg.solve(marginal_cov, y[i == arm])))
    for l in range(L):
        block = np.asarray(effect_cov)[l * D:(l + 1) * D, l * D:(l + 1) * D]
        expected = np.linalg.inv(block) + sum(float(mixing[arm, l]) ** 2 * evidence[arm][0] for arm in range(K))
        info = np.linalg.solve(block, np.asarray(effect_mean[l])) + sum(float(mixing[arm, l]) * evidence[arm][1] for arm in range(K))
        np.testing.assert_allclose(state.effect_precision[l], expected, rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(state.effect_info[l], info, rtol=1e-9, atol=1e-10)


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
