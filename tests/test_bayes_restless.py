"""Bayesian restless bandits: the Dirichlet program's closed form vs NUTS, the hierarchical program,
validation, the learning policies (convergence to the known-model allocations) and the learning simulator."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from structbandits.agents.bayes_restless import RestlessOutcome, TransitionCounts, bayes_restless_policy
from structbandits.agents.restless import RestlessContext, restless_policy
from structbandits.diagnostics import policy_to_arviz, posterior_to_arviz
from structbandits.diagnostics.checks import check_posterior
from structbandits.envs.rmab import synthetic_domain
from structbandits.errors import ValidationError
from structbandits.experiments.restless_runner import simulate_restless_learning
from structbandits.inference import posterior
from structbandits.inference.dirichlet import (
    dirichlet_covariance,
    dirichlet_mean,
    dirichlet_sample,
    transition_counts,
)
from structbandits.models.restless import restless_dirichlet, support_concentration
from structbandits.planning.equity import group_counts


def _counts(rng, probs, per_row):
    """Multinomial counts (N, S, A, S) with ``per_row`` moves per row."""
    return np.stack([rng.multinomial(per_row, row) for row in probs.reshape(-1, probs.shape[-1])]).reshape(
        probs.shape).astype(float)


def test_dirichlet_sample_moments_and_tiny_concentrations():
    concentration = jnp.array([[0.01, 0.01, 2.0], [3.0, 1.0, 0.5]])
    draws = dirichlet_sample(jax.random.PRNGKey(0), concentration, (40000,))
    assert np.all(np.isfinite(draws)) and np.allclose(draws.sum(-1), 1.0)
    mean, cov = dirichlet_mean(concentration), dirichlet_covariance(concentration)
    se = np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1) / draws.shape[0])
    assert np.all(np.abs(draws.mean(0) - mean) < 5 * se + 1e-12)
    empirical = np.einsum("nri,nrj->rij", draws - mean, draws - mean) / draws.shape[0]
    assert np.allclose(empirical, cov, atol=3e-3)


def test_conjugate_posterior_matches_nuts_on_the_flat_program():
    rng = np.random.default_rng(0)
    concentration = rng.uniform(0.5, 2.0, size=(1, 3, 2, 3))
    counts = _counts(rng, rng.dirichlet(np.ones(3), size=(1, 3, 2)), 6)
    data = {"concentration": concentration, "counts": counts}
    assert posterior(restless_dirichlet, data).method == "conjugate"
    check = check_posterior(restless_dirichlet, data, num_draws=800, num_warmup=400)
    assert check.r_hat_max < 1.05
    assert check.passed, str(check)


def test_counts_and_transition_lists_give_the_same_posterior():
    rng = np.random.default_rng(1)
    n, shape = 50, (3, 2, 2, 2)
    lists = {name: rng.integers(0, bound, n) for name, bound in
             (("arms", 3), ("states", 2), ("actions", 2), ("next_states", 2))}
    counts = np.asarray(transition_counts(*(jnp.asarray(v) for v in lists.values()), shape))
    assert counts.sum() == n
    concentration = np.full(shape, 0.5)
    from_list = posterior(restless_dirichlet, {"concentration": concentration, **lists}, num_draws=5)
    from_counts = posterior(restless_dirichlet, {"concentration": concentration, "counts": counts}, num_draws=5)
    np.testing.assert_allclose(from_list.mean("transitions"), from_counts.mean("transitions"))
    np.testing.assert_allclose(from_list.mean("transitions"), (concentration + counts) /
                               (concentration + counts).sum(-1, keepdims=True))
    assert posterior_to_arviz(from_list).posterior["transitions"].dims == ("chain", "draw", "arm", "state", "action",
                                                                 "next_state")


@pytest.mark.slow
def test_nuts_on_the_hierarchical_program_recovers_group_means():
    rng = np.random.default_rng(2)
    group_means = rng.dirichlet(np.full(2, 2.0), size=(2, 2, 2))  # (G, S, A, S)
    groups = np.repeat([0, 1], 6)
    kappa = 30.0
    arms = np.stack([[[rng.dirichlet(kappa * group_means[g, s, a]) for a in range(2)] for s in range(2)]
                     for g in groups])
    counts = _counts(rng, arms, 100)
    data = {"concentration": np.ones((2, 2, 2, 2)), "counts": counts, "groups": groups, "arm_concentration": kappa}
    with pytest.raises(ValidationError, match="hierarchical"):
        posterior(restless_dirichlet, data, method="conjugate")
    fit = posterior(restless_dirichlet, data, num_draws=400, num_warmup=400)
    assert fit.method == "nuts"
    draws = fit.draws["group_transitions"]
    sd = draws.std(axis=(0, 1))
    error = np.abs(fit.mean("group_transitions") - group_means)
    assert np.all(error < np.maximum(4 * sd, 0.02)), (error.max(), sd.max())
    assert np.all(sd < 0.12)  # the data pin the group means down, not just the prior
    assert posterior_to_arviz(fit).posterior["group_transitions"].dims[2] == "group"


@pytest.mark.parametrize("data, match", [
    ({"concentration": np.zeros((1, 2, 2, 2))}, "concentration"),
    ({"concentration": np.ones((1, 2, 2, 3))}, "concentration"),
    ({"concentration": np.ones((1, 2, 2, 2)), "counts": -np.ones((1, 2, 2, 2))}, "counts"),
    ({"concentration": np.ones((1, 2, 2, 2)), "counts": np.ones((2, 2, 2, 2))}, "counts"),
    ({"concentration": np.ones((1, 2, 2, 2)), "arms": np.zeros(3, int), "states": np.zeros(3, int)}, "actions"),
    ({"concentration": np.ones((1, 2, 2, 2)), "arms": np.zeros(2, int), "states": np.array([0, 2]),
      "actions": np.zeros(2, int), "next_states": np.zeros(2, int)}, "states"),
    ({"concentration": np.ones((2, 2, 2, 2)), "groups": np.array([0, 1, 1])}, "arm_concentration"),
    ({"concentration": np.ones((2, 2, 2, 2)), "groups": np.array([0, 0]), "arm_concentration": 1.0}, "groups"),
])
def test_bad_counts_and_priors_are_rejected(data, match):
    with pytest.raises(ValidationError, match=match):
        posterior(restless_dirichlet, data, method="conjugate" if "groups" not in data else "nuts")


def test_policy_arguments_are_validated():
    prior, groups = np.ones((4, 2, 2, 2)), np.array([0, 0, 1, 1])
    for kwargs, match in [(dict(name="Whittle"), "name"), (dict(sampling="ucb"), "sampling"),
                          (dict(pooling="none"), "pooling"), (dict(pooling="partial"), "arm_concentration"),
                          (dict(arm_concentration=2.0), "arm_concentration"),
                          (dict(groups=np.array([0, 0, 2, 2])), "groups"),
                          (dict(prior_concentration=np.ones((4, 2, 3, 2))), "two actions")]:
        args = dict(name="MMR", prior_concentration=prior, groups=groups) | kwargs
        with pytest.raises(ValidationError, match=match):
            bayes_restless_policy(args.pop("name"), args.pop("prior_concentration"), args.pop("groups"), **args)


def _small_instance():
    return synthetic_domain(num_arms=20, budget=4, horizon=10)  # groups 5/5/1/5/4


@pytest.mark.parametrize("name", ["Opt", "MMR", "MNW-EG"])
def test_thompson_allocations_converge_to_the_known_model_allocations(name):
    instance = _small_instance()
    truth = jnp.asarray(instance.transitions)
    known = restless_policy(name, instance.num_arms, instance.group_sizes, instance.budget)
    learner = bayes_restless_policy(name, support_concentration(instance.transitions), instance.groups,
                                    max_budget=instance.budget)

    def agrees(per_row, key):
        state = TransitionCounts(per_row * truth, learner.params)  # expected counts of per_row visits to every row
        state_key, act_key = jax.random.split(key)
        states = jax.random.bernoulli(state_key, 0.5, (instance.num_arms,)).astype(jnp.int32)
        ctx = RestlessContext(states, jnp.asarray(0), jnp.asarray(instance.horizon), jnp.asarray(instance.budget),
                              truth, jnp.asarray(instance.rewards), jnp.asarray(instance.groups))
        # The learner plans under split(key)[1]: give the known planner that key (same tie-breaks, dummies).
        budgets = [group_counts(policy.act(s, k, ctx)[0], ctx.groups, instance.num_groups)
                   for policy, s, k in ((known, known.init(act_key), jax.random.split(act_key)[1]),
                                        (learner, state, act_key))]
        return jnp.all(budgets[0] == budgets[1])

    keys = jax.random.split(jax.random.PRNGKey(3), 64)
    agreement = jax.jit(lambda per_row: jnp.mean(jax.vmap(agrees, in_axes=(None, 0))(per_row, keys)))
    informed, uninformed = float(agreement(1e6)), float(agreement(0.0))  # one compilation for both
    assert informed >= 0.95
    assert informed > uninformed or uninformed >= 0.95


def test_learning_simulation_counts_every_transition_and_learns_the_truth():
    instance = _small_instance()
    prior = support_concentration(instance.transitions)
    policy = bayes_restless_policy("MMR", prior, instance.groups, sampling="mean", max_budget=instance.budget)
    key = jax.random.PRNGKey(0)
    trajectory, final = simulate_restless_learning(instance, policy, key, 2, 6)
    again, _ = simulate_restless_learning(instance, policy, key, 2, 6)
    np.testing.assert_array_equal(trajectory.arm_totals, again.arm_totals)  # same seed, same run
    assert trajectory.arm_totals.shape == (2, 6, 20) and trajectory.group_actions.shape == (2, 6, 10, 5)
    counts = np.asarray(final.counts)
    np.testing.assert_array_equal(counts.sum(axis=(1, 2, 3, 4)), 6 * 10 * 20)  # one move per arm and round
    assert np.all(counts[:, instance.transitions == 0] == 0)  # never a move the dynamics cannot make
    np.testing.assert_array_equal(counts[:, :, :, 1].sum(axis=(1, 2, 3)),
                                  np.asarray(trajectory.group_actions).sum(axis=(1, 2, 3)))  # acts are counted
    # Law of large numbers: frequently visited rows' empirical frequencies are near the truth.
    visits = counts.sum(-1, keepdims=True)
    freq = counts / np.maximum(visits, 1)
    truth = instance.transitions[None]
    sd = np.sqrt(truth * (1 - truth) / np.maximum(visits, 1))
    busy = np.broadcast_to(visits >= 30, counts.shape)
    assert busy.sum() > 20 and np.all(np.abs(freq - truth)[busy] <= 5 * sd[busy] + 1e-9)


def test_posterior_draws_follow_the_pooling():
    instance = _small_instance()
    prior = support_concentration(instance.transitions)
    counts = _counts(np.random.default_rng(4), instance.transitions, 40)
    same_group = instance.groups == 0
    for pooling in ("arm", "group", "partial"):
        policy = bayes_restless_policy("Opt", prior, instance.groups, pooling=pooling,
                                       arm_concentration=5.0 if pooling == "partial" else None,
                                       max_budget=instance.budget)
        state = TransitionCounts(jnp.asarray(counts), policy.params)
        draws = np.asarray(policy.posterior_draws(state, jax.random.PRNGKey(0), 2000)["transitions"])
        assert draws.shape == (2000,) + instance.transitions.shape
        if pooling == "arm":  # exactly the flat program's closed form
            mean = (prior + counts) / (prior + counts).sum(-1, keepdims=True)
            assert np.abs(draws.mean(0) - mean).max() < 0.02
        elif pooling == "group":  # one shared draw per group
            assert np.all(draws[:, same_group] == draws[:, same_group][:, :1])
        else:  # arms of a group differ but are shrunk towards each other
            assert not np.all(draws[:, same_group] == draws[:, same_group][:, :1])
    idata = policy_to_arviz(policy, state, num_draws=50)
    assert idata.posterior["transitions"].dims == ("chain", "draw", "arm", "state", "action", "next_state")
    assert idata.posterior["transitions"].shape[:3] == (4, 50, instance.num_arms)


def test_update_adds_one_count_per_arm():
    instance = _small_instance()
    policy = bayes_restless_policy("MMR", support_concentration(instance.transitions), instance.groups,
                                   max_budget=instance.budget)
    state = policy.init(jax.random.PRNGKey(0))
    states = jnp.arange(20) % 2
    ctx = RestlessContext(states, jnp.asarray(0), jnp.asarray(10), jnp.asarray(4), jnp.asarray(instance.transitions),
                          jnp.asarray(instance.rewards), jnp.asarray(instance.groups))
    action = jnp.arange(20) < 4
    next_states = 1 - states
    state = policy.update(state, ctx, action, RestlessOutcome(jnp.zeros(20), next_states))
    expected = np.zeros(instance.transitions.shape)
    expected[np.arange(20), np.asarray(states), np.asarray(action, int), np.asarray(next_states)] = 1
    np.testing.assert_array_equal(state.counts, expected)


@pytest.mark.slow
def test_learning_study_reports_the_price_of_learning(tmp_path):
    from structbandits.experiments.restless_learning import LearningAgent, price_of_learning, run_restless_learning

    agents = [LearningAgent("NoAct", "NoAct", "known"), LearningAgent("MMR", "MMR", "known"),
              LearningAgent("TS-MMR", "MMR", "thompson")]
    frame = run_restless_learning(("tiny",), episodes=2, seeds=2, agents=agents, out=tmp_path, progress=False,
                                  builders={"tiny": _small_instance})
    assert set(frame["episode"]) == {0, 1} and (tmp_path / "learning_tiny.png").stat().st_size > 0
    price = price_of_learning(frame).set_index("policy").loc["TS-MMR"]
    summary = frame[frame["episode"] == 1].drop_duplicates(["policy", "seed"]).groupby("policy")["utility"].mean()
    assert price["utility_fraction"] == pytest.approx(summary["TS-MMR"] / summary["MMR"])
    assert price["gain_fraction"] == pytest.approx((summary["TS-MMR"] - summary["NoAct"]) /
                                                   (summary["MMR"] - summary["NoAct"]))


def test_learning_reproduction_is_registered_and_rejects_a_partial_episode(tmp_path):
    from structbandits.experiments.reproductions import REPRODUCTIONS, run_reproduction

    entry = REPRODUCTIONS["ermab-learning"]
    assert entry.quick_horizon % 20 == 0 and entry.default_horizon % 20 == 0
    with pytest.raises(ValidationError, match="multiple"):
        run_reproduction("ermab-learning", tmp_path, horizon=30, seeds=1)
