"""Restless policies and the simulator: budgets, common random numbers, analytic expectations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from structbandits.agents.restless import EXACT_SETTINGS, RestlessContext, restless_policy
from structbandits.envs.rmab.domains import synthetic_domain
from structbandits.errors import ValidationError
from structbandits.experiments.restless import BASE_POLICIES, ErmabSetting, run_restless_grid, summarise_restless
from structbandits.experiments.restless_runner import restless_frame, simulate_restless
from structbandits.experiments.restless_plots import plot_ermab_fig3, plot_ermab_fig4

BUDGET = 4
SEEDS = 6


@pytest.fixture(scope="module")
def instance():
    return synthetic_domain(num_arms=20, budget=BUDGET, horizon=6)  # groups 5/5/1/5/4


@pytest.fixture(scope="module")
def runs(instance):
    key = jax.random.PRNGKey(0)
    return {name: simulate_restless(instance, restless_policy(name, 20, instance.group_sizes, BUDGET), key, SEEDS)
            for name in BASE_POLICIES}


def test_every_policy_acts_on_exactly_the_budget(runs):
    for name, trajectory in runs.items():
        per_round = np.asarray(trajectory.group_actions).sum(axis=-1)
        assert np.all(per_round == (0 if name == "NoAct" else BUDGET)), name
        assert np.all(np.asarray(trajectory.group_actions) <= np.array([5, 5, 1, 5, 4]))


def test_policies_share_start_states_and_transition_draws(instance, runs):
    first_round = [np.asarray(t.group_rewards)[:, 0] for t in runs.values()]
    for rewards in first_round[1:]:
        np.testing.assert_array_equal(rewards, first_round[0])  # the same start states for every policy
    again = simulate_restless(instance, restless_policy("NoAct", 20, instance.group_sizes, BUDGET),
                              jax.random.PRNGKey(0), SEEDS)
    np.testing.assert_array_equal(again.arm_totals, runs["NoAct"].arm_totals)
    tail = simulate_restless(instance, restless_policy("NoAct", 20, instance.group_sizes, BUDGET),
                             jax.random.PRNGKey(0), 3, first_seed=3)
    np.testing.assert_array_equal(tail.final_states, np.asarray(runs["NoAct"].final_states)[3:])
    # Group D and E arms do not respond to actions: with common draws they move identically under
    # every policy, whatever the policy did elsewhere.
    inert = instance.groups >= 3
    for trajectory in runs.values():
        np.testing.assert_array_equal(np.asarray(trajectory.arm_totals)[:, inert],
                                      np.asarray(runs["NoAct"].arm_totals)[:, inert])


def test_no_action_rewards_match_the_markov_chain(instance):
    trajectory = simulate_restless(instance, restless_policy("NoAct", 20, instance.group_sizes),
                                   jax.random.PRNGKey(5), 2000)
    totals = np.asarray(trajectory.arm_totals)
    for arm in (0, 10, 19):
        dist, expected = instance.initial_probs[arm], 0.0
        for _ in range(instance.horizon):
            expected += dist @ instance.rewards[arm]
            dist = dist @ instance.transitions[arm, :, 0, :]
        se = totals[:, arm].std() / np.sqrt(totals.shape[0])
        assert abs(totals[:, arm].mean() - expected) < 4 * se


def test_tidy_frame(instance, runs):
    frame = restless_frame(runs["Opt"], instance, "Opt", domain="synthetic", budget=BUDGET)
    assert len(frame) == SEEDS * 5
    assert {"domain", "budget", "policy", "seed", "group", "group_name", "group_size", "group_mean", "utility",
            "gini", "acted"} <= set(frame.columns)
    per_seed = frame.groupby("seed").apply(lambda f: (f.group_mean * f.group_size).sum() / 20, include_groups=False)
    np.testing.assert_allclose(per_seed.to_numpy(), frame.drop_duplicates("seed")["utility"].to_numpy())
    assert frame["gini"].between(0, 1).all()
    assert frame.groupby("seed")["acted"].sum().eq(BUDGET * instance.horizon).all()


def step_round_robin(policy, states, budget, rounds):
    act = jax.jit(policy.act)
    state = policy.init(jax.random.PRNGKey(0))
    counts = np.zeros(states.size, dtype=int)
    history = []
    n = states.size
    for t in range(rounds):
        ctx = RestlessContext(jnp.asarray(states), jnp.asarray(t), jnp.asarray(rounds - t), jnp.asarray(budget),
                              jnp.zeros((n, 2, 2, 2)), jnp.zeros((n, 2)), jnp.zeros(n, dtype=int))
        mask, _ = act(state, jax.random.PRNGKey(t), ctx)
        state = policy.update(state, ctx, mask, jnp.zeros(n))
        counts += np.asarray(mask)
        history.append(counts.copy())
    return np.array(history)


def test_high_risk_round_robin_rotates_through_the_risky_arms():
    states = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])  # state 0 is the risky one
    policy = restless_policy("HR-RR", 10, [10], high_risk_states=[True, False])
    history = step_round_robin(policy, states, 3, 8)
    assert np.all(history[:, 4:] == 0)  # only risky arms while there are enough of them
    assert np.all(history[:, :4].max(axis=1) - history[:, :4].min(axis=1) <= 1)  # a true rotation
    assert history[-1, :4].tolist() == [6, 6, 6, 6]
    history = step_round_robin(policy, states, 6, 9)
    assert np.all(history[-1, :4] == 9)
    assert history[-1, 4:].tolist() == [3] * 6  # the other two slots rotate over the low-risk arms
    randomised = step_round_robin(restless_policy("HR-Rand", 10, [10], high_risk_states=[True, False]),
                                  states, 5, 4)
    assert np.all(randomised[-1, :4] == 4) and randomised[-1, 4:].sum() == 4


def test_policy_and_simulator_validation(instance):
    with pytest.raises(ValidationError, match="name: expected one of"):
        restless_policy("Whittle", 20, instance.group_sizes)
    with pytest.raises(ValidationError, match="group_sizes: expected positive integer sizes summing to num_arms=20"):
        restless_policy("MMR", 20, [5, 5])
    with pytest.raises(ValidationError, match=r"group_sizes: .*got \[1.5, 1.5\]"):
        restless_policy("MMR", 3, [1.5, 1.5])
    with pytest.raises(ValidationError, match="high_risk_states: HR-RR needs"):
        restless_policy("HR-RR", 20, instance.group_sizes)
    with pytest.raises(ValidationError, match="budget: expected an integer <= 20, got 21"):
        simulate_restless(instance, restless_policy("NoAct", 20, instance.group_sizes), jax.random.PRNGKey(0), 1,
                          budget=21)


def test_grid_summary_and_plots(tmp_path, instance):
    setting = ErmabSetting("synthetic", "tiny", lambda: instance, (2, BUDGET), ("NoAct", "Random"), BUDGET)
    frame = run_restless_grid([setting], seeds=3, progress=False)
    summary = summarise_restless(frame)
    assert len(summary) == 4 and summary["seeds"].eq(3).all()
    assert {"utility", "utility_se", "gini", "gini_seed_mean", "gini_se"} <= set(summary.columns)
    no_act = summary[summary.policy == "NoAct"]
    assert no_act["utility"].nunique() == 1  # same seeds, no actions: budget-independent
    assert plot_ermab_fig3(frame, tmp_path / "fig3.png").stat().st_size > 0
    assert plot_ermab_fig4(frame, tmp_path / "fig4.png").stat().st_size > 0


@pytest.mark.slow
def test_exact_settings_plan_with_unclipped_indices(instance):
    policy = restless_policy("MNW-EG", 20, instance.group_sizes, BUDGET, EXACT_SETTINGS)
    trajectory = simulate_restless(instance, policy, jax.random.PRNGKey(0), 2)
    assert np.all(np.asarray(trajectory.group_actions).sum(-1) == BUDGET)


@pytest.mark.slow
def test_pareto_and_capacity_planning_runs():
    from structbandits.experiments.restless import run_capacity_planning, run_ermab_pareto

    pareto = run_ermab_pareto(alphas=(0.0, 1.0), budget=30, seeds=2, policies=("Random", "MMR"), progress=False)
    random_rows = pareto[pareto.policy == "Random"]
    # Random ignores the reward weight: with common random numbers both λ give the same outcomes.
    assert random_rows["engagement"].nunique() == 1 and random_rows["health"].nunique() == 1
    frame, smallest = run_capacity_planning(budgets=(0, 60), target=0.0, seeds=2, policies=("HR-RR",),
                                            progress=False)
    assert smallest == {"HR-RR": 0} and frame["final_healthy"].between(0, 1).all()
