"""Restless policies built together share one compiled program and still run exactly as when built alone.

``restless_policy(..., planners=...)`` puts several planners into one ``act`` and
``bayes_restless_policies`` several (planner, sampling, pooling) policies, known-model ones included,
into one program: ``lax.switch`` branches picked by the params, so a study compiles once. The oracle
for every member is the same policy built alone by ``restless_policy`` / ``bayes_restless_policy``
(one planner, one model, no conditional in its program): a member run through the shared program
must reproduce it bit for bit, and the shared program must compile once for all members.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from params_as_data import same_leaves

from structbandits.agents.bayes_restless import bayes_restless_policies, bayes_restless_policy
from structbandits.agents.restless import restless_policy
from structbandits.envs.rmab.domains import synthetic_domain
from structbandits.errors import ValidationError
from structbandits.experiments import restless_runner
from structbandits.models.restless import support_concentration

KAPPA = 4.0
MEMBERS = [("NoAct", "known", "partial"), ("MNW-EG", "known", "partial"), ("MMR", "thompson", "partial"),
           ("Opt", "mean", "partial"), ("MMR", "thompson", "arm")]


def _instance():
    return synthetic_domain(num_arms=20, budget=4, horizon=5)  # groups 5/5/1/5/4


def test_members_of_one_learning_program_run_exactly_as_built_alone():
    instance = _instance()
    prior = support_concentration(instance.transitions)
    key = jax.random.PRNGKey(2)
    family = bayes_restless_policies(MEMBERS, prior, instance.groups, arm_concentration=KAPPA,
                                     max_budget=instance.budget)
    assert all(m.act is family[0].act and m.update is family[0].update for m in family)
    assert all(same_leaves(m.init(key).params, m.params) for m in family)  # init(key) keeps each one's own
    compiled = restless_runner._learn_batch._cache_size()
    shared = [simulate(instance, family[0], key, m.params) for m in family]
    assert restless_runner._learn_batch._cache_size() == compiled + 1  # one program for every member
    for (name, sampling, pooling), run in zip(MEMBERS, shared):
        if sampling == "known":
            alone = restless_policy(name, instance.num_arms, instance.group_sizes, instance.budget)
        else:
            alone = bayes_restless_policy(name, prior, instance.groups, sampling=sampling, pooling=pooling,
                                          arm_concentration=KAPPA if pooling == "partial" else None,
                                          max_budget=instance.budget)
        assert same_leaves(run, simulate(instance, alone, key, alone.params)), (name, sampling, pooling)
    assert not any(same_leaves(shared[i], shared[j]) for i in range(len(MEMBERS)) for j in range(i))


def simulate(instance, policy, key, params):
    trajectory, _ = restless_runner.simulate_restless_learning(instance, policy, key, 2, 2, params=params)
    return trajectory


def test_planners_of_one_program_share_act_and_run_exactly_as_built_alone():
    instance = _instance()
    names = ("MNW-EG", "NoAct", "Opt")  # any order: the program's branch order is fixed
    family = {n: restless_policy(n, instance.num_arms, instance.group_sizes, instance.budget, planners=names)
              for n in names}
    assert len({p.act for p in family.values()}) == 1 and len({p.update for p in family.values()}) == 1
    assert len({int(p.params.planner) for p in family.values()}) == 3
    key = jax.random.PRNGKey(5)
    runner = family["Opt"]
    for name, member in family.items():
        alone = restless_policy(name, instance.num_arms, instance.group_sizes, instance.budget)
        assert same_leaves(restless_runner.simulate_restless(instance, runner, key, 2, params=member.params),
                           restless_runner.simulate_restless(instance, alone, key, 2)), name
    one = restless_policy("MMR", 6, [2, 4], 3, planners=["MMR"])  # a program of one: the policy alone
    assert one.act is restless_policy("MMR", 6, [2, 4], 3).act and int(one.params.planner) == 0


@pytest.mark.parametrize("name, planners", [("Opt", ("MMR", "MNW")), ("Random", ("Random", "Opt")),
                                            ("Opt", ("Opt", "Whittle"))])
def test_planner_sets_are_validated(name, planners):
    with pytest.raises(ValidationError, match="planners"):
        restless_policy(name, 6, [2, 4], 3, planners=planners)


def test_learning_sets_are_validated():
    prior, groups = np.ones((4, 2, 2, 2)), np.array([0, 0, 1, 1])
    for members, kwargs, match in [([], {}, "policies"), ([("MMR", "mean")], {}, "triples"),
                                   ([("MMR", "mean", "arm"), ("Opt", "known", "partial")], {}, "arm_concentration"),
                                   ([("MMR", "mean", "arm")], {"arm_concentration": 2.0}, "arm_concentration"),
                                   ([("Random", "known", "arm")], {}, "name")]:
        with pytest.raises(ValidationError, match=match):
            bayes_restless_policies(members, prior, groups, **kwargs)
