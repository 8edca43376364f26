"""Restless instances, the reference domains' layouts and dynamics, and the Dirichlet program."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer.util import log_density
from scipy import stats

from structbandits.envs.rmab.domains import (
    diabetes_domain,
    diabetes_state,
    diabetes_transitions,
    high_a1c_states,
    maternal_domain,
    maternal_transitions,
    synthetic_domain,
)
from structbandits.envs.rmab.instance import RestlessInstance, group_labels_from_fractions, sample_arm_parameters
from structbandits.errors import ValidationError
from structbandits.models.restless import restless_dirichlet, transition_concentration


def tiny_instance(**overrides):
    rng = np.random.default_rng(0)
    args = dict(transitions=rng.dirichlet(np.ones(2), size=(4, 2, 2)), rewards=np.tile([0.0, 1.0], (4, 1)),
                groups=np.array([0, 0, 1, 1]), initial_probs=np.full((4, 2), 0.5), horizon=3, budget=1)
    args.update(overrides)
    return RestlessInstance(**args)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"transitions": np.full((4, 2, 2, 2), 0.6)}, "transitions: expected probabilities summing to 1"),
    ({"transitions": np.full((4, 2, 2, 3), 1 / 3)}, "transitions: expected shape (N, S, A, S)"),
    ({"rewards": np.zeros((4, 3))}, "rewards: expected shape (4, 2)"),
    ({"rewards": np.array([[0, np.nan]] * 4)}, "rewards: expected finite values"),
    ({"groups": np.array([0, 0, 2, 2])}, "groups: expected labels 0..G-1 with every group non-empty, got no arm in group 1"),
    ({"groups": np.array([0.5, 0, 1, 1])}, "groups: expected integer labels"),
    ({"budget": 5}, "budget: expected an integer <= 4, got 5"),
    ({"horizon": 0}, "horizon: expected an integer >= 1, got 0"),
    ({"initial_probs": np.full((4, 2), 0.3)}, "initial_probs: expected probabilities summing to 1"),
    ({"group_names": ("a",)}, "group_names: expected 2 names, got 1"),
])
def test_instance_validation_names_the_argument(overrides, message):
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        tiny_instance(**overrides)


def test_instance_properties_and_subset():
    inst = tiny_instance(group_names=("x", "y"))
    assert (inst.num_arms, inst.num_states, inst.num_actions, inst.num_groups) == (4, 2, 2, 2)
    assert inst.group_sizes.tolist() == [2, 2]
    assert inst.with_budget(2).budget == 2 and inst.budget == 1
    sub = inst.subset([2, 3])
    assert sub.groups.tolist() == [0, 0] and sub.group_names == ("y",)
    np.testing.assert_array_equal(sub.transitions, inst.transitions[2:])


def test_reference_group_layouts():
    diabetes = group_labels_from_fractions([0.175, 0.15, 0.2, 0.15, 0.125, 0.2], 300)
    assert np.bincount(diabetes).tolist() == [53, 45, 60, 45, 37, 60]
    assert diabetes[299] == 0 and diabetes[51] == 0 and diabetes[52] == 1  # the leftover arm is group 0
    assert synthetic_domain().group_sizes.tolist() == [25, 25, 5, 25, 20]
    for variant, sizes in [("A", [120, 40, 40]), ("B", [40, 120, 40]), ("C", [40, 40, 120])]:
        assert maternal_domain(variant).group_sizes.tolist() == sizes
    with pytest.raises(ValidationError, match="fractions: expected a 1-D sequence summing to at most 1"):
        group_labels_from_fractions([0.7, 0.7], 10)


def test_per_arm_noise_has_the_reference_distribution():
    groups = np.repeat([0, 1], 20000)
    means = np.array([[0.3, 0.9], [0.5, 0.02]])
    draws = sample_arm_parameters(jax.random.PRNGKey(0), means, groups, 0.2, (1e-3, 1 - 1e-3))
    assert draws.shape == (40000, 2)
    for g in range(2):
        for k in range(2):
            sd = 0.2 * min(means[g, k], 1 - means[g, k])
            x = draws[groups == g, k]
            assert abs(x.mean() - means[g, k]) < 5 * sd / np.sqrt(x.size)
            np.testing.assert_allclose(x.std(), sd, rtol=0.03)
    clipped = sample_arm_parameters(jax.random.PRNGKey(1), np.array([[0.99]]), np.zeros(5000, int), 0.5,
                                    (0.025, 0.975))
    assert clipped.max() == 0.975 and clipped.min() >= 0.025 and (clipped == 0.975).mean() > 0.4


def test_maternal_rows_follow_the_parameter_table():
    params = np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]])
    p = maternal_transitions(params)[0]
    np.testing.assert_allclose(p[0, 0], [0.1, 0.9, 0.0])
    np.testing.assert_allclose(p[0, 1], [0.2, 0.8, 0.0])
    np.testing.assert_allclose(p[1, 0], [0.0, 0.7, 0.3])
    np.testing.assert_allclose(p[1, 1], [0.4, 0.6, 0.0])
    np.testing.assert_allclose(p[2, 0], [0.0, 0.5, 0.5])
    np.testing.assert_allclose(p[2, 1], [0.0, 0.4, 0.6])
    inst = maternal_domain("C")
    assert np.all(inst.transitions[:, 0, :, 2] == 0) and np.all(inst.transitions[:, 2, :, 0] == 0)


def test_diabetes_dynamics_use_the_older_memory_slot():
    #        i_mtoe i_mtod i_etoe u_mtod noeng_gl noeng_ll eng_gl eng_ll
    params = np.array([[0.6, 0.05, 0.9, 0.1, 0.07, 0.95, 0.2, 0.99]])
    p = diabetes_transitions(params)[0]
    np.testing.assert_allclose(p.sum(-1), 1.0)
    # Maintenance, A1c >= 8, memory (E, E): acting engages w.p. 0.6; memory becomes (M, E);
    # A1c uses the older slot (E) -> eng_gl.
    s = diabetes_state(1, 0, 3)
    assert p[s, 1, diabetes_state(2, 1, 1)] == pytest.approx(0.6 * 0.2)
    assert p[s, 1, diabetes_state(0, 0, 1)] == pytest.approx(0.05 * 0.8)
    assert p[s, 0, diabetes_state(1, 1, 1)] == pytest.approx(0.9 * 0.2)
    # Engaged, A1c < 8, memory (E, M): the older slot is M -> noeng_ll; memory becomes (E, E).
    s = diabetes_state(2, 1, 2)
    assert p[s, 1, diabetes_state(2, 1, 3)] == pytest.approx(0.9 * 0.95)
    assert p[s, 0, diabetes_state(1, 0, 3)] == pytest.approx(1.0 * 0.05)
    # Dropout is absorbing for engagement and is remembered as maintenance.
    s = diabetes_state(0, 0, 3)
    assert p[s, 1, diabetes_state(0, 1, 1)] == pytest.approx(0.2)
    # i_mtoe + i_mtod > 1 is clipped and renormalised as in the reference.
    q = diabetes_transitions(np.array([[0.975, 0.06, 0.9, 0.1, 0.07, 0.95, 0.2, 0.99]]))[0]
    s = diabetes_state(1, 0, 0)
    engaged = sum(q[s, 1, diabetes_state(2, h, 0)] for h in range(2))
    assert engaged == pytest.approx(0.975 / 1.035)


def test_diabetes_instance_rewards_start_and_risk_set():
    inst = diabetes_domain(0.5, num_arms=30)
    assert inst.num_states == 24 and np.all(inst.initial_probs[:, diabetes_state(2, 0, 0)] == 1)
    np.testing.assert_allclose(inst.rewards, 0.5 * inst.components["engagement"] + 0.5 * inst.components["health"])
    assert inst.rewards[0, diabetes_state(0, 1, 0)] == 0.5 and inst.rewards[0, diabetes_state(1, 1, 2)] == 1.0
    assert high_a1c_states().sum() == 12 and not high_a1c_states()[diabetes_state(1, 1, 0)]
    with pytest.raises(ValidationError, match="alpha: expected a weight in"):
        diabetes_domain(1.5)


def test_dirichlet_program_log_density_matches_scipy():
    rng = np.random.default_rng(3)
    concentration = transition_concentration(rng.dirichlet(np.ones(3), size=(2, 3, 2)), strength=5.0)
    transitions = rng.dirichlet(np.ones(3), size=(2, 3, 2))
    arms, states, actions = rng.integers(0, 2, 7), rng.integers(0, 3, 7), rng.integers(0, 2, 7)
    next_states = rng.integers(0, 3, 7)
    logp, _ = log_density(restless_dirichlet, (jnp.asarray(concentration), jnp.asarray(arms), jnp.asarray(states),
                                               jnp.asarray(actions), jnp.asarray(next_states)), {},
                          {"transitions": jnp.asarray(transitions)})
    expected = sum(stats.dirichlet.logpdf(transitions[i, s, a], concentration[i, s, a])
                   for i in range(2) for s in range(3) for a in range(2))
    expected += np.log(transitions[arms, states, actions, next_states]).sum()
    assert float(logp) == pytest.approx(expected, rel=1e-10)
