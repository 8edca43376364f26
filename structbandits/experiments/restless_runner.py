"""The restless runner: restless policies × an instance × seeds, scanned over rounds, vmapped over seeds, one ``jit``.

The restless counterpart of ``experiments.runner`` (one design: the same key layout and the same
seed keys). A restless policy acts on all N arms at once with a budget, so it gets its own loop
over ``RestlessContext`` / ``RestlessOutcome`` rather than the bandit ``Environment`` protocol; the
instance (``envs.rmab.RestlessInstance``) is plain data, and this module joins it to the agents.

Keys, as in ``experiments.runner``: simulation j uses ``fold_in(key, first_seed + j)``
(``seeding.simulation_keys``), split into an environment key and an agent key; the agent key
splits into its ``init`` key and its per-round key, folded with the round.

Round t of one simulation: the policy sees a ``RestlessContext`` and returns an (N,) action mask;
every arm collects r_i(s_t) (the reward of the state *before* the transition, as the reference
logs it) and moves to s_{t+1} by inverse-CDF sampling of P[i, s_t, a_t] with a uniform draw u_{i,t}.

Common random numbers: the start states and the uniforms u_{i,t} come from the seed's environment
key and the round only, never from the policy, so for a given seed every policy meets the same
start states and the same "luck" of every arm in every round (two policies that act alike on an
arm see it move alike). The reference code gave every (policy, trial) run its own seed instead.
Policies draw their own randomness (tie-breaks, dummy arms) from a separate key of the same seed.

The policy's ``update`` receives a ``RestlessOutcome``: the rewards and the arms' next states, so a
learning agent sees every transition it caused (known-model policies ignore it).

``simulate_restless_learning`` runs E episodes of H rounds per seed with one agent state carried
across them (the arms restart from the start distribution every episode; what the agent learned
stays). Episode e of seed j has its own environment draws, the same for every policy.

Results: ``RestlessTrajectory`` arrays, or a tidy DataFrame via ``restless_frame``.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from structbandits.agents.bayes_restless import RestlessOutcome
from structbandits.agents.protocol import Policy, check_params, init_state, without_params
from structbandits.agents.restless import RestlessContext
from structbandits.envs.rmab.instance import RestlessInstance
from structbandits.errors import ValidationError, check_integer
from structbandits.planning.metrics import gini_index_jax
from structbandits.seeding import simulation_keys

__all__ = ["RestlessTrajectory", "restless_frame", "simulate_restless", "simulate_restless_learning"]


class RestlessTrajectory(NamedTuple):
    """One batch of simulations (S seeds, N arms, H rounds, G groups, C reward components).

    Attributes
    ----------
    arm_totals : (S, N) each arm's total reward over the horizon.
    component_totals : (S, C, N) the same for each reward component of the instance.
    group_actions : (S, H, G) arms acted on per group and round.
    group_rewards : (S, H, G) mean reward per arm of each group in each round.
    final_states : (S, N) states after the last round.
    """

    arm_totals: jax.Array
    component_totals: jax.Array
    group_actions: jax.Array
    group_rewards: jax.Array
    final_states: jax.Array


def _episode(policy: Policy, horizon: int, num_groups: int, transitions, rewards, components, groups,
             initial_probs, budget, agent_state, env_key, agent_round_key):
    """One episode of ``horizon`` rounds from ``agent_state``; returns (final agent state, trajectory)."""
    num_arms = rewards.shape[0]
    start_key, dynamics_key = jax.random.split(env_key)
    states = jax.random.categorical(start_key, jnp.log(initial_probs), axis=-1)
    sizes = jnp.bincount(groups, length=num_groups)
    arms = jnp.arange(num_arms)

    def step(carry, t):
        agent_state, states, totals, component_totals = carry
        context = RestlessContext(states, t, horizon - t, budget, transitions, rewards, groups)
        action, _ = policy.act(agent_state, jax.random.fold_in(agent_round_key, t), context)
        reward = rewards[arms, states]
        rows = transitions[arms, states, action.astype(jnp.int32)]
        uniform = jax.random.uniform(jax.random.fold_in(dynamics_key, t), (num_arms,))
        next_states = jnp.minimum((uniform[:, None] > jnp.cumsum(rows, axis=1)[:, :-1]).sum(axis=1),
                                  rows.shape[1] - 1)
        agent_state = policy.update(agent_state, context, action, RestlessOutcome(reward, next_states))
        record = (jax.ops.segment_sum(action.astype(jnp.int32), groups, num_segments=num_groups),
                  jax.ops.segment_sum(reward, groups, num_segments=num_groups) / sizes)
        carry = (agent_state, next_states, totals + reward, component_totals + components[:, arms, states])
        return carry, record

    # The running totals start batched over seeds, as the scan's carry ends up (they add each seed's
    # rewards): a carry that starts unbatched makes vmap batch the whole round twice (scan's batching
    # fixpoint), a sizeable part of tracing this program. ``states * 0``: exact zeros per seed, of
    # ``jnp.zeros``'s dtype.
    zeros = (states * 0).astype(jnp.result_type(float))
    init = (agent_state, states, zeros, jnp.broadcast_to(zeros, (components.shape[0], num_arms)))
    (agent_state, final, totals, component_totals), (acted, group_rewards) = jax.lax.scan(step, init,
                                                                                         jnp.arange(horizon))
    return agent_state, RestlessTrajectory(totals, component_totals, acted, group_rewards, final)


def _simulate_one(policy: Policy, horizon: int, num_groups: int, transitions, rewards, components, groups,
                  initial_probs, budget, params, key):
    env_key, agent_key = jax.random.split(key)
    agent_init_key, agent_round_key = jax.random.split(agent_key)
    _, trajectory = _episode(policy, horizon, num_groups, transitions, rewards, components, groups, initial_probs,
                             budget, init_state(policy, agent_init_key, params), env_key, agent_round_key)
    return trajectory


def _learn_one(policy: Policy, horizon: int, num_groups: int, num_episodes: int, transitions, rewards, components,
               groups, initial_probs, budget, params, key):
    env_key, agent_key = jax.random.split(key)
    agent_init_key, agent_round_key = jax.random.split(agent_key)

    def episode(agent_state, e):
        return _episode(policy, horizon, num_groups, transitions, rewards, components, groups, initial_probs, budget,
                        agent_state, jax.random.fold_in(env_key, e), jax.random.fold_in(agent_round_key, e))

    final_state, trajectory = jax.lax.scan(episode, init_state(policy, agent_init_key, params), jnp.arange(num_episodes))
    return trajectory, final_state


# The policy is static without its params (``without_params``); the params are traced, so policies
# that differ only in hyperparameter values share the program (give one's functions the other's params).
@partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _learn_batch(policy, horizon, num_groups, num_episodes, transitions, rewards, components, groups, initial_probs,
                 budget, params, keys):
    one = partial(_learn_one, policy, horizon, num_groups, num_episodes, transitions, rewards, components, groups,
                  initial_probs, budget, params)
    return jax.vmap(one)(keys)


@partial(jax.jit, static_argnums=(0, 1, 2))
def _simulate_batch(policy, horizon, num_groups, transitions, rewards, components, groups, initial_probs, budget,
                    params, keys):
    one = partial(_simulate_one, policy, horizon, num_groups, transitions, rewards, components, groups,
                  initial_probs, budget, params)
    return jax.vmap(one)(keys)


def _batch_inputs(instance, policy, key, num_seeds, budget, first_seed, params) -> tuple:
    """Validated (transitions, rewards, components, groups, initial_probs, budget, keys) for the batch runners;
    ``params`` (when given) checked against ``policy.params`` (``check_params``)."""
    if not isinstance(instance, RestlessInstance):
        raise ValidationError(f"instance: expected a RestlessInstance, got {type(instance).__name__}")
    if not isinstance(policy, Policy):
        raise ValidationError(f"policy: expected a Policy, got {type(policy).__name__}")
    num_seeds = check_integer("num_seeds", num_seeds, minimum=1)
    first_seed = check_integer("first_seed", first_seed, minimum=0)
    budget = instance.budget if budget is None else check_integer("budget", budget, minimum=0,
                                                                  maximum=instance.num_arms)
    keys = simulation_keys(key, num_seeds, first_seed)
    if params is not None and policy.params is not None:
        check_params(params, policy.params)
    components = np.stack(list(instance.components.values())) if instance.components else \
        np.zeros((0,) + instance.rewards.shape)
    return (jnp.asarray(instance.transitions), jnp.asarray(instance.rewards), jnp.asarray(components),
            jnp.asarray(instance.groups), jnp.asarray(instance.initial_probs), jnp.asarray(budget, dtype=jnp.int32),
            keys)


def simulate_restless(instance: RestlessInstance, policy: Policy, key: jax.Array, num_seeds: int, *,
                      budget: int | None = None, first_seed: int = 0, params=None) -> RestlessTrajectory:
    """Run ``policy`` on ``instance`` for ``instance.horizon`` rounds in ``num_seeds`` simulations.

    Parameters
    ----------
    instance : the arms (their transitions are also the planning model in the context).
    policy : a ``Policy`` over ``RestlessContext`` (``agents.restless.restless_policy``).
    key : root key; simulation j uses ``fold_in(key, first_seed + j)``, so seed j is the same
        draw of start states and transition uniforms for every policy.
    num_seeds : number of simulations (vmapped).
    budget : arms per round (default ``instance.budget``); a traced value, so budgets share one
        compilation.
    first_seed : offset of the seed numbers (to extend a study in batches).
    params : the policy's hyperparameters (default ``policy.params``), traced: a policy built with
        other values of them (same constructor and shapes) gives its params here to reuse this
        policy's compiled program. They must match ``policy.params``' structure, leaf shapes and dtype
        kinds (ValidationError naming ``params`` otherwise).

    Returns
    -------
    ``RestlessTrajectory`` with leading axis num_seeds.
    """
    *inputs, keys = _batch_inputs(instance, policy, key, num_seeds, budget, first_seed, params)
    return _simulate_batch(without_params(policy), instance.horizon, instance.num_groups, *inputs,
                           policy.params if params is None else params, keys)


def simulate_restless_learning(instance: RestlessInstance, policy: Policy, key: jax.Array, num_seeds: int,
                               num_episodes: int, *, budget: int | None = None, first_seed: int = 0,
                               params=None) -> tuple[RestlessTrajectory, object]:
    """Run ``policy`` for ``num_episodes`` episodes of ``instance.horizon`` rounds, learning across them.

    Every episode restarts the arms from ``instance.initial_probs`` (a new cohort of the same
    arms, or the program's next planning period) while the agent keeps its state, so a Bayesian
    agent's posterior accumulates every transition seen so far. Known-model policies give the
    ceiling on exactly the same episodes (common random numbers per seed and episode).

    Parameters
    ----------
    instance, policy, key, num_seeds, budget, first_seed, params : as in ``simulate_restless``.
    num_episodes : E >= 1 episodes per seed (scanned; the agent state is carried).

    Returns
    -------
    (trajectory, final agent states): a ``RestlessTrajectory`` whose arrays have leading axes
    (num_seeds, E), and the agent states after the last episode (leading axis num_seeds).
    """
    num_episodes = check_integer("num_episodes", num_episodes, minimum=1)
    *inputs, keys = _batch_inputs(instance, policy, key, num_seeds, budget, first_seed, params)
    return _learn_batch(without_params(policy), instance.horizon, instance.num_groups, num_episodes, *inputs,
                        policy.params if params is None else params, keys)


def restless_frame(trajectory: RestlessTrajectory, instance: RestlessInstance, policy_name: str, *,
                   first_seed: int = 0, **labels) -> pd.DataFrame:
    """Tidy results: one row per (seed, group).

    Columns: the ``labels`` (e.g. domain, budget), ``policy``, ``seed``, ``group`` (index),
    ``group_name``, ``group_size``, ``group_mean`` (per-arm total reward over the horizon averaged
    within the group), ``<component>_mean`` for each reward component, ``utility`` (per-arm total
    reward averaged over all arms, per seed), ``gini`` (Gini index of that seed's group means) and
    ``acted`` (arm-rounds acted on in the group over the horizon).
    """
    totals = np.asarray(trajectory.arm_totals)
    num_seeds = totals.shape[0]
    groups = instance.groups
    sizes = instance.group_sizes
    onehot = np.eye(instance.num_groups)[groups]  # (N, G)
    group_means = totals @ onehot / sizes  # (S, G)
    gini = np.asarray(gini_index_jax(group_means))
    frame = pd.DataFrame({
        **{name: value for name, value in labels.items()},
        "policy": policy_name,
        "seed": np.repeat(np.arange(first_seed, first_seed + num_seeds), instance.num_groups),
        "group": np.tile(np.arange(instance.num_groups), num_seeds),
        "group_name": np.tile(np.array(instance.group_names, dtype=object), num_seeds),
        "group_size": np.tile(sizes, num_seeds),
        "group_mean": group_means.ravel(),
    })
    component_totals = np.asarray(trajectory.component_totals)
    for c, name in enumerate(instance.components):
        frame[f"{name}_mean"] = (component_totals[:, c] @ onehot / sizes).ravel()
    frame["utility"] = np.repeat(totals.mean(axis=1), instance.num_groups)
    frame["gini"] = np.repeat(gini, instance.num_groups)
    frame["acted"] = np.asarray(trajectory.group_actions).sum(axis=1).ravel()
    return frame
