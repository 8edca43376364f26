"""The experiment runner: agents × environments × seeds, vmapped over seeds, scanned over rounds.

``simulate_seed`` plays one policy against one environment for one seed with ``lax.scan``;
``batched_simulator`` is its jitted ``vmap`` over a batch of seed keys; ``run_experiment`` loops over
(environment, agent, seed batch) units with a progress bar and returns a tidy DataFrame.

Keys: simulation i of root seed s uses ``fold_in(PRNGKey(s), i)``. From it the environment's
ground truth, contexts and reward noise are derived independently of the agent (common random
numbers), and the agent gets its own stream. An environment with a ``transition`` (drift, habituation)
carries its state through the scan, advanced after each round with the round's third key; each round's
expected rewards, and so the regret's optimum, are those of that round's truth.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from tqdm import tqdm

from structbandits.agents.protocol import Policy, check_params, init_state, without_params
from structbandits.compiled_memory import release_compiled_programs
from structbandits.envs.protocol import Environment
from structbandits.errors import MAX_ELEMENTS, ValidationError, check_integer, check_num_elements
from structbandits.experiments.action_range import action_range
from structbandits.runtime import ensure_configured
from structbandits.seeding import seed_keys  # re-exported: the runner's key convention

__all__ = ["Trajectory", "run_experiment", "batched_simulator", "seed_keys", "simulate_seed"]

RESULT_COLUMNS = [
    "env", "agent", "seed", "round", "action", "reward", "expected_reward",
    "expected_regret", "cumulative_regret", "realized_regret", "propensity",
]


class Trajectory(NamedTuple):
    """Per-round records of one simulation, each (T,) (or (S, T) when vmapped over seeds)."""

    action: jax.Array
    reward: jax.Array
    expected_reward: jax.Array
    expected_regret: jax.Array
    realized_regret: jax.Array
    propensity: jax.Array


def simulate_seed(policy: Policy, env: Environment, key: jax.Array, horizon: int, params=None) -> Trajectory:
    """Play ``policy`` against ``env`` for ``horizon`` rounds from one simulation key; ``params`` are
    the policy's hyperparameters (None: ``policy.params``)."""
    return _play(policy, env, key, horizon, params)[1]


def _play(policy: Policy, env: Environment, key: jax.Array, horizon: int, params=None):
    """``simulate_seed``'s scan: (the agent's state after the last update, the Trajectory)."""
    env_key, agent_key = jax.random.split(key)
    truth_key, round_key = jax.random.split(env_key)
    agent_init_key, agent_round_key = jax.random.split(agent_key)
    first_env_state = env.init(truth_key)
    moving = env.transition is not None  # a stationary env's state stays a constant of the scan (its program unchanged)

    def step(carry, t):
        agent_state, env_state = carry if moving else (carry, first_env_state)
        context_key, reward_key = jax.random.split(jax.random.fold_in(round_key, t))
        context = env.context(env_state, context_key)
        action, info = policy.act(agent_state, jax.random.fold_in(agent_round_key, t), context)
        means = env.mean_rewards(env_state, context)
        # Every arm's realised reward this round, each with its own noise key, so realised regret
        # r(best) − r(chosen) is defined as in the meTS reference code, and agents that pull the same
        # arm in the same round see the same reward.
        arms = jnp.arange(env.num_actions)
        rewards = jax.vmap(lambda arm: env.reward(env_state, jax.random.fold_in(reward_key, arm), context, arm))(arms)
        reward = rewards[action]
        agent_state = policy.update(agent_state, context, action, reward)
        record = Trajectory(
            action=action,
            reward=reward,
            expected_reward=means[action],
            expected_regret=jnp.max(means) - means[action],
            realized_regret=rewards[jnp.argmax(means)] - reward,
            propensity=jnp.asarray(info.propensity, dtype=reward.dtype),
        )
        if not moving:
            return agent_state, record
        # The round's third key (fold_in(·, 2) is split's third under partitionable threefry), so the
        # context and reward keys, and hence every stationary result, are unchanged.
        transition_key = jax.random.fold_in(jax.random.fold_in(round_key, t), 2)
        return (agent_state, env.transition(env_state, transition_key, context, action)), record

    agent_state = init_state(policy, agent_init_key, params)
    final, records = jax.lax.scan(step, (agent_state, first_env_state) if moving else agent_state, jnp.arange(horizon))
    return (final[0] if moving else final), records


@partial(jax.jit, static_argnums=(0, 1, 3, 5, 6))
def _simulate_batch(policy: Policy, env: Environment, keys: jax.Array, horizon: int, params,
                    params_batched: bool, return_state: bool = False):
    # The hyperparameters are a traced argument: one program per (policy functions, env, shapes).
    # Without return_state the final states are dropped inside the program (the default program is
    # unchanged); with it they come back too, (S, ...) per leaf.
    played = jax.vmap(lambda key, p: _play(policy, env, key, horizon, p),
                      (0, 0 if params_batched else None))(keys, params)
    return played if return_state else played[1]


def batched_simulator(policy: Policy, env: Environment, horizon: int) -> Callable[..., Trajectory]:
    """``simulate_seed`` jitted and vmapped over a batch of keys (S, key); records are (S, T).

    The returned function takes ``keys`` and optionally ``params``: the policy's hyperparameters
    (default ``policy.params``) shared by all keys, or, with ``params_batched=True``, one per key
    (leading axis S, e.g. from ``agents.stack_params``) so that one batch runs several grid cells.
    Compiled code is cached per (policy functions, env, horizon, batch size, params shapes): the
    hyperparameters are traced, so new values of them do not recompile. With ``return_state=True``
    (a second program) it returns ``(states, trajectory)``: the agent's state after the last update,
    every leaf with a leading axis S.

    ``params`` other than ``policy.params`` must match its structure, leaf shapes and dtype kinds
    (with ``params_batched=True``, a leading axis of S = len(keys) on every leaf): a ValidationError
    naming ``params`` and the leaf otherwise (``agents.protocol.check_params``; shapes only, checked
    before the call, so the compiled program is unchanged).
    """
    static = without_params(policy)

    def run(keys, params=policy.params, params_batched=False, return_state=False):
        if params is not None and policy.params is not None and (params_batched or params is not policy.params):
            check_params(params, policy.params, batch_size=jnp.shape(keys)[0] if params_batched else None)
        return _simulate_batch(static, env, keys, horizon, params, params_batched, return_state)

    return run


# Contexts go into the results frame by default when a round's context has at most this many numbers
# (e.g. one feature vector); per-arm contexts (K, d) only when asked for (``contexts=True``).
MAX_CONTEXT_COLUMNS = 32


def _context_size(env: Environment) -> int:
    context = jax.eval_shape(env.context, jax.eval_shape(env.init, jax.random.PRNGKey(0)), jax.random.PRNGKey(0))
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(context))


@partial(jax.jit, static_argnums=(0, 2))
def _contexts_batch(env: Environment, keys: jax.Array, horizon: int, actions: jax.Array) -> list[jax.Array]:
    # The contexts _play's rounds saw: the same keys (and, where the truth moves, the same transitions
    # driven by the recorded actions), without the agent. Leaves (S, T, ...).
    def one(key, acts):
        env_key, _ = jax.random.split(key)
        truth_key, round_key = jax.random.split(env_key)

        def step(env_state, t):
            context = env.context(env_state, jax.random.split(jax.random.fold_in(round_key, t))[0])
            if env.transition is not None:
                env_state = env.transition(env_state, jax.random.fold_in(jax.random.fold_in(round_key, t), 2),
                                           context, acts[t])
            return env_state, context

        return jax.lax.scan(step, env.init(truth_key), jnp.arange(horizon))[1]

    return jax.tree.leaves(jax.vmap(one)(keys, actions))


def _context_columns(env: Environment, keys: jax.Array, horizon: int, actions: np.ndarray) -> dict[str, np.ndarray]:
    """``context_0, context_1, ...``: each round's context, its leaves flattened in order, one row per (seed, round)."""
    leaves = _contexts_batch(env, keys, horizon, jnp.asarray(actions))
    flat = np.concatenate([np.asarray(leaf).reshape(actions.size, -1) for leaf in leaves], axis=1)
    return {f"context_{i}": flat[:, i] for i in range(flat.shape[1])}


def _tidy(trajectory: Trajectory, env_name: str, agent_name: str, first_seed: int) -> pd.DataFrame:
    records = {field: np.asarray(value) for field, value in trajectory._asdict().items()}
    num_seeds, horizon = records["action"].shape
    frame = pd.DataFrame({
        "env": env_name,
        "agent": agent_name,
        "seed": np.repeat(np.arange(first_seed, first_seed + num_seeds), horizon),
        "round": np.tile(np.arange(1, horizon + 1), num_seeds),
        **{field: values.reshape(-1) for field, values in records.items()},
    })
    frame["cumulative_regret"] = np.cumsum(records["expected_regret"], axis=1).reshape(-1)
    return frame[RESULT_COLUMNS]


def _policy_for(agent_name: str, agent, env_name: str, env: Environment) -> Policy:
    """The agent's Policy for ``env``, checked by abstract evaluation to act on the env's contexts."""
    policy = agent if isinstance(agent, Policy) else agent(env) if callable(agent) else None
    if not isinstance(policy, Policy):
        raise ValidationError(f"agents[{agent_name!r}]: expected a Policy or a function env -> Policy, "
                              f"got {type(policy if policy is not None else agent).__name__}")
    key = jax.random.PRNGKey(0)
    env_state = jax.eval_shape(env.init, key)
    context = jax.eval_shape(env.context, env_state, key)
    try:
        actions, (action, _) = action_range(policy.act, jax.eval_shape(lambda k: policy.init(k), key), key, context)
    except (TypeError, ValueError, IndexError) as err:
        raise ValidationError(
            f"agents[{agent_name!r}]: cannot act on the contexts of env {env_name!r} "
            f"(shape {jax.tree.map(lambda leaf: tuple(leaf.shape), context)}, {env.num_actions} actions): "
            f"{str(err).splitlines()[0]}"
        ) from None
    if action.shape != () or not jnp.issubdtype(action.dtype, jnp.integer):
        raise ValidationError(f"agents[{agent_name!r}]: expected act to return a scalar integer action, "
                              f"got shape {action.shape} and dtype {action.dtype}")
    # The action set read off act's program (None where it does not bound it; then _check_actions
    # checks the actions actually taken). Actions beyond the env's would index its rewards out of
    # range; a choice among fewer (0..n-1, n > 1) is an agent built for another env. A constant action
    # (a fixed-arm baseline) is neither.
    low, high = actions if actions is not None else (0, env.num_actions - 1)
    if low < 0 or high >= env.num_actions or (low == 0 < high < env.num_actions - 1):
        chooses = f"{high + 1} actions (0..{high})" if low >= 0 else f"actions {low}..{high}"
        raise ValidationError(f"agents[{agent_name!r}]: chooses among {chooses}, but env {env_name!r} has "
                              f"{env.num_actions} actions; expected an agent built for {env.num_actions} actions")
    return policy


def _check_actions(actions: np.ndarray, agent_name: str, env_name: str, num_actions: int) -> None:
    """Actions outside 0..K-1 (possible only where ``action_range`` could not bound act) invalidate a run."""
    bad = actions[(actions < 0) | (actions >= num_actions)]
    if bad.size:
        raise ValidationError(f"agents[{agent_name!r}]: chose action {int(bad[0])}, but env {env_name!r} has "
                              f"{num_actions} actions (0..{num_actions - 1}); expected an agent built for "
                              f"{num_actions} actions")


def run_experiment(
    agents: Mapping[str, Policy | Callable[[Environment], Policy]],
    envs: Environment | Mapping[str, Environment],
    *,
    horizon: int,
    num_seeds: int,
    seed: int = 0,
    seed_batch: int | None = None,
    progress: bool = True,
    return_states: bool = False,
    contexts: bool | None = False,
) -> pd.DataFrame | tuple[pd.DataFrame, dict[tuple[str, str], Any]]:
    """Simulate every agent on every environment for ``num_seeds`` seeds.

    Parameters
    ----------
    agents : name -> Policy, or name -> factory(env) -> Policy (for agents sized by the environment).
    envs : an Environment, or name -> Environment.
    horizon : rounds per simulation (>= 1).
    num_seeds : simulations per (agent, environment) pair (>= 1).
    seed : root seed (>= 0); the same seed gives an identical DataFrame.
    seed_batch : seeds per vmapped batch (default: all at once, capped at 50); batches bound memory
        and drive the progress bar.
    progress : show a tqdm progress bar over (environment, agent, seed batch) units.
    return_states : also return every seed's final agent state (compiles a second simulation
        program per (environment, agent); the records are the same as without it).
    contexts : add each round's context to the frame as columns ``context_0, context_1, ...`` (the
        context's leaves flattened in order): True always, False never, None where a round's context
        has at most ``MAX_CONTEXT_COLUMNS`` numbers (a feature vector, not per-arm features). They are
        replayed from the same keys (and the recorded actions, where the truth moves) by a small program
        of their own per environment, so the simulation programs are unchanged. ``run_config`` (the
        CLI's runs) passes None, so results.parquet carries them for logged-data analysis.

    Returns
    -------
    A tidy DataFrame, one row per (env, agent, seed, round), with columns
    env, agent, seed, round, action, reward, expected_reward, expected_regret, cumulative_regret,
    realized_regret, propensity (NaN where the agent does not report one), then the context columns
    if recorded (NaN for environments without them). Expected regret is
    max_a E[r | x, a] - E[r | x, action], free of reward noise; realised regret is
    r(best arm) - r(chosen arm) with this round's realised rewards (what the meTS paper reports).

    With ``return_states=True``, ``(frame, states)``: ``states[(env name, agent name)]`` is the
    agent's state after its last update (round ``horizon``), a pytree like ``policy.init``'s whose
    every leaf has a leading seed axis (num_seeds, ...) in the order of the frame's seeds 0, 1, ...
    (jax arrays, on the default device). For one seed's posterior:

        frame, states = run_experiment({"lints": agent}, env, horizon=200, num_seeds=3, return_states=True)
        state = jax.tree.map(lambda leaf: leaf[0], states[("env", "lints")])    # seed 0
        diagnostics.policy_to_arviz(agent, state)

    Raises
    ------
    ValidationError, before any simulation, naming the agent, when an agent cannot act on an
    environment's contexts or chooses among another number of actions than the environment has
    (read off its ``act`` program by ``action_range``); after a batch, when an agent whose action
    set the program does not bound chose an action outside 0..K-1.
    """
    ensure_configured()
    horizon = check_integer("horizon", horizon, minimum=1)
    num_seeds = check_integer("num_seeds", num_seeds, minimum=1)
    seed = check_integer("seed", seed, minimum=0, maximum=2**63 - 1)  # jax.random.PRNGKey takes an int64
    seed_batch = check_integer("seed_batch", seed_batch if seed_batch is not None else min(num_seeds, 50), minimum=1)
    check_num_elements("horizon, num_seeds", (horizon, num_seeds), limit=10 * MAX_ELEMENTS)  # per-round records
    if isinstance(envs, Environment):
        envs = {"env": envs}
    if not agents:
        raise ValidationError("agents: expected at least one agent, got none")
    if not envs:
        raise ValidationError("envs: expected at least one environment, got none")
    for name, env in envs.items():
        if not isinstance(env, Environment):
            raise ValidationError(f"envs[{name!r}]: expected an Environment, got {type(env).__name__}")

    batches = [(start, min(seed_batch, num_seeds - start)) for start in range(0, num_seeds, seed_batch)]
    jobs = [(env_name, env, agent_name, _policy_for(agent_name, agent, env_name, env))
            for env_name, env in envs.items() for agent_name, agent in agents.items()]
    return_states = bool(return_states)
    if contexts not in (True, False, None):
        raise ValidationError(f"contexts: expected True, False or None, got {contexts!r}")
    record_contexts = {name: contexts if contexts is not None else _context_size(env) <= MAX_CONTEXT_COLUMNS
                       for name, env in envs.items()}
    frames, states = [], {}
    with tqdm(total=len(jobs) * len(batches), desc="simulating", unit="batch", disable=not progress) as bar:
        for env_name, env, agent_name, policy in jobs:
            run_batch = batched_simulator(policy, env, horizon)
            final_states = []
            for start, size in batches:
                bar.set_postfix_str(f"{env_name}/{agent_name} seeds {start}-{start + size - 1}")
                trajectory = run_batch(seed_keys(seed, size, start), return_state=return_states)
                if return_states:
                    final_state, trajectory = trajectory
                    final_states.append(final_state)
                _check_actions(np.asarray(trajectory.action), agent_name, env_name, env.num_actions)
                frame = _tidy(trajectory, env_name, agent_name, start)
                if record_contexts[env_name]:
                    columns = _context_columns(env, seed_keys(seed, size, start), horizon, np.asarray(trajectory.action))
                    frame = pd.concat([frame, pd.DataFrame(columns, index=frame.index)], axis=1)
                frames.append(frame)
                bar.update()
            if return_states:
                states[(env_name, agent_name)] = (final_states[0] if len(final_states) == 1 else
                                                  jax.tree.map(lambda *leaves: jnp.concatenate(leaves), *final_states))
            release_compiled_programs()
    frame = pd.concat(frames, ignore_index=True)
    return (frame, states) if return_states else frame
