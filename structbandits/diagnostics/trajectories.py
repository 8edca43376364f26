"""Posterior trajectories: how an agent's posterior contracts over the rounds of one simulation.

``posterior_trajectory(policy, env, horizon=..., every=k)`` plays one seed of the runner's
simulation (the same ground truth, contexts, rewards and agent keys as ``run_experiment`` with the
same root seed) inside one ``jit``: a ``lax.scan`` over blocks of k rounds, each block a ``lax.scan``
over its rounds, recording after every block the posterior mean and sd of the chosen sites
(from ``policy.posterior_draws``). No Python loop runs per round.
``plot_posterior_trajectory`` draws mean ± 2 sd per component against the round, with the
environment's true value as a line where it has one.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from structbandits.agents.protocol import init_state, without_params
from structbandits.errors import ValidationError, check_integer
from structbandits.seeding import seed_keys

__all__ = ["PosteriorTrajectory", "plot_posterior_trajectory", "posterior_trajectory"]

TRAJECTORY_COLUMNS = ["round", "site", "component", "index", "mean", "sd", "truth"]


class PosteriorTrajectory(NamedTuple):
    """Result of ``posterior_trajectory``.

    Attributes
    ----------
    frame : tidy DataFrame, one row per (checkpoint round, site, scalar component): round (0 is the
        prior), site, component (e.g. "theta[1,0]"), index (tuple), mean, sd, truth (NaN if unknown).
    history : the simulation's rounds: ``contexts`` (a pytree, leading T), ``actions`` (T,),
        ``rewards`` (T,), ``expected_regret`` (T,), as NumPy arrays.
    env_state : the seed's ground truth (``env.init``'s state).
    truth_notes : site -> why its truth column is NaN, for every site whose true value was not found
        (empty when all were).
    """

    frame: pd.DataFrame
    history: dict[str, Any]
    env_state: Any
    truth_notes: dict[str, str]


@partial(jax.jit, static_argnums=(0, 1, 3, 4, 5, 6))
def _play(policy, env, key, num_blocks: int, every: int, num_draws: int, sites: tuple[str, ...], draw_key, params):
    # Keys exactly as experiments.runner.simulate_seed derives them, so the run is that seed's run.
    env_key, agent_key = jax.random.split(key)
    truth_key, round_key = jax.random.split(env_key)
    agent_init_key, agent_round_key = jax.random.split(agent_key)
    env_state = env.init(truth_key)

    def summary(state, block):
        draws = policy.posterior_draws(state, jax.random.fold_in(draw_key, block), num_draws)
        return {site: (jnp.mean(draws[site], 0), jnp.std(draws[site], 0)) for site in sites}

    def step(state, t):
        context_key, reward_key = jax.random.split(jax.random.fold_in(round_key, t))
        context = env.context(env_state, context_key)
        action, _ = policy.act(state, jax.random.fold_in(agent_round_key, t), context)
        reward = env.reward(env_state, jax.random.fold_in(reward_key, action), context, action)
        means = env.mean_rewards(env_state, context)
        record = {"contexts": context, "actions": action, "rewards": reward,
                  "expected_regret": jnp.max(means) - means[action]}
        return policy.update(state, context, action, reward), record

    def block(state, b):
        state, records = jax.lax.scan(step, state, b * every + jnp.arange(every))
        return state, (records, summary(state, b + 1))

    state = init_state(policy, agent_init_key, params)
    _, (records, summaries) = jax.lax.scan(block, state, jnp.arange(num_blocks))
    prior = summary(state, 0)
    summaries = jax.tree.map(lambda first, rest: jnp.concatenate([first[None], rest]), prior, summaries)
    history = jax.tree.map(lambda leaf: leaf.reshape((num_blocks * every,) + leaf.shape[2:]), records)
    return summaries, history, env_state


def _describe(env_state) -> str:
    """What an environment state holds, for a message: its fields or keys with their shapes."""
    if isinstance(env_state, Mapping):
        items = env_state.items()
    elif hasattr(env_state, "_fields"):
        items = zip(env_state._fields, env_state)
    else:
        return f"a {type(env_state).__name__} (neither a NamedTuple nor a dict, so no site can be looked up by name)"
    kind = "dict with keys" if isinstance(env_state, Mapping) else f"{type(env_state).__name__} with fields"
    return f"a {kind} " + ", ".join(f"{name!r} {np.shape(value)}" for name, value in items)


def _truth_values(truth, env_state, site: str, shape: tuple[int, ...]) -> tuple[np.ndarray, str]:
    """The true value of ``site`` (NaN where unknown) and, when unknown, why."""
    if callable(truth):
        truth = truth(env_state)
    if truth is not None:
        if site not in truth:
            return np.full(shape, np.nan), f"truth has no key {site!r} (it has {sorted(truth)})"
        value = truth[site]
        if np.shape(value) != shape:
            raise ValidationError(f"truth[{site!r}]: expected shape {shape}, got {np.shape(value)}")
        return np.asarray(value, dtype=float), ""
    # By default: the environment state's field (NamedTuple) or key (dict) of the same name, e.g. theta.
    if isinstance(env_state, Mapping):
        value = env_state.get(site)
    else:
        value = getattr(env_state, site, None) if hasattr(env_state, "_fields") else None
    if value is None:
        return np.full(shape, np.nan), (f"the environment state has no {site!r}: it is {_describe(env_state)}; "
                                        f"pass truth={{{site!r}: value}} or truth=lambda env_state: {{...}}")
    if np.shape(value) != shape:
        return np.full(shape, np.nan), (f"the environment state's {site!r} has shape {np.shape(value)}, the posterior "
                                        f"site has {shape}; pass truth= with the value in the site's layout")
    return np.asarray(value, dtype=float), ""


def posterior_trajectory(
    policy: Any,
    env: Any,
    *,
    horizon: int,
    every: int,
    seed: int = 0,
    sites: Sequence[str] | None = None,
    num_draws: int = 1000,
    truth: Mapping[str, Any] | Callable[[Any], Mapping[str, Any]] | None = None,
    key: jax.Array | None = None,
) -> PosteriorTrajectory:
    """Posterior mean and sd of ``sites`` every ``every`` rounds of seed 0 of root ``seed``.

    Parameters
    ----------
    policy : a Policy with ``posterior_draws``; env : an Environment.
    horizon : rounds to play, a multiple of ``every``.
    every : k >= 1, rounds between checkpoints (round 0, the prior, is always recorded).
    seed : the runner's root seed; the simulation is ``run_experiment(..., seed=seed)``'s first seed.
    sites : the ``posterior_draws`` sites to record (default all).
    num_draws : posterior draws per checkpoint for the moments (Monte-Carlo error sd / √num_draws).
    truth : site -> true value (same shape as the site), or env_state -> such a mapping; by default
        the environment state's field (NamedTuple) or key (dict) with the site's name, if its shape is
        the site's (e.g. ``theta``). A site whose truth is not found gets NaN, the reason in
        ``truth_notes`` and a ``UserWarning`` naming the site and what the environment state holds.
    key : PRNG key for the posterior draws (default ``PRNGKey(0)``); independent of the simulation.

    Returns
    -------
    PosteriorTrajectory (frame, history, env_state, truth_notes).
    """
    if getattr(policy, "posterior_draws", None) is None:
        raise ValidationError("policy: expected a Policy with posterior_draws (a Bayesian agent), got one without")
    if getattr(env, "transition", None) is not None:
        raise ValidationError("env: expected a stationary environment (one truth to follow the posterior to); "
                              "this one moves between rounds (it has a transition: drift or habituation)")
    horizon = check_integer("horizon", horizon, minimum=1)
    every = check_integer("every", every, minimum=1)
    if horizon % every:
        raise ValidationError(f"every: expected a divisor of horizon={horizon}, got {every}")
    num_draws = check_integer("num_draws", num_draws, minimum=2)
    seed = check_integer("seed", seed, minimum=0)
    probe = jax.eval_shape(lambda state, k: policy.posterior_draws(state, k, num_draws),
                           jax.eval_shape(lambda k: policy.init(k), jax.random.PRNGKey(0)), jax.random.PRNGKey(0))
    available = list(probe)
    sites = tuple(available if sites is None else sites)
    unknown = [site for site in sites if site not in probe]
    if unknown or not sites:
        raise ValidationError(f"sites: expected some of the policy's posterior sites {available}, got {list(sites)}")
    key = jax.random.PRNGKey(0) if key is None else key
    summaries, history, env_state = _play(without_params(policy), env, seed_keys(seed, 1)[0], horizon // every, every,
                                          num_draws, sites, key, policy.params)
    rounds = np.arange(horizon // every + 1) * every
    frames, notes = [], {}
    for site in sites:
        mean, sd = (np.asarray(a) for a in summaries[site])
        shape = mean.shape[1:]
        indices = list(np.ndindex(*shape)) if shape else [()]
        labels = [f"{site}[{','.join(map(str, i))}]" if i else site for i in indices]
        true, note = _truth_values(truth, env_state, site, shape)
        true = true.reshape(-1)
        if note:
            notes[site] = note
        frames.append(pd.DataFrame({
            "round": np.repeat(rounds, len(indices)),
            "site": site,
            "component": np.tile(labels, len(rounds)),
            "index": indices * len(rounds),
            "mean": mean.reshape(len(rounds), -1).reshape(-1),
            "sd": sd.reshape(len(rounds), -1).reshape(-1),
            "truth": np.tile(true, len(rounds)),
        }))
    if notes:
        warnings.warn("posterior_trajectory: no true value for " + "; ".join(f"site {site!r}: {note}" for site, note in notes.items())
                      + " (truth is NaN for these sites)", UserWarning, stacklevel=2)
    history = jax.tree.map(np.asarray, history)
    return PosteriorTrajectory(pd.concat(frames, ignore_index=True)[TRAJECTORY_COLUMNS], history, env_state, notes)


def plot_posterior_trajectory(trajectory: PosteriorTrajectory | pd.DataFrame, path: str | Path, *,
                              components: Sequence[str] | None = None, max_components: int = 12,
                              title: str = "") -> Path:
    """Posterior mean ± 2 sd against the round, one panel per component, the true value dashed.

    ``components`` picks panels by label (e.g. ["theta[0,1]"]); default the first ``max_components``.
    Writes a PNG to ``path`` and returns it.
    """
    from matplotlib.figure import Figure

    frame = trajectory.frame if isinstance(trajectory, PosteriorTrajectory) else trajectory
    labels = list(dict.fromkeys(frame["component"]))
    if components is None:
        components = labels[:check_integer("max_components", max_components, minimum=1)]
    missing = [c for c in components if c not in labels]
    if missing or not components:
        raise ValidationError(f"components: expected labels among {labels[:6]}..., got {list(components)}")
    columns = min(4, len(components))
    rows = -(-len(components) // columns)
    fig = Figure(figsize=(3.2 * columns, 2.5 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).reshape(-1)
    for ax, label in zip(axes, components):
        curve = frame[frame["component"] == label]
        line, = ax.plot(curve["round"], curve["mean"], label="posterior mean")
        ax.fill_between(curve["round"], curve["mean"] - 2 * curve["sd"], curve["mean"] + 2 * curve["sd"],
                        color=line.get_color(), alpha=0.25, linewidth=0, label="± 2 sd")
        if np.isfinite(curve["truth"]).any():
            ax.axhline(float(curve["truth"].iloc[0]), color="black", linestyle="--", linewidth=1, label="truth")
        ax.set(title=label, xlabel="round")
        ax.grid(alpha=0.3)
    for ax in axes[len(components):]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path
