"""Equity when the dynamics are unknown: learning restless agents against the known-model ceiling.

The three equitable-RMAB domains are run with agents that do not know the arms' transitions. Each
starts from the weak prior ``support_concentration`` (one pseudo-observation per row spread over
the moves the domain allows; no arm's or group's numbers) and learns online
(``agents.bayes_restless``): Thompson-sampled planning ("TS-<planner>") and certainty equivalence on
the posterior mean ("CE-<planner>") for Opt, MMR and MNW-EG, with the hierarchical (partially
pooled) posterior, plus TS-MMR with independent per-arm posteriors ("TS-MMR/arm") as the
no-pooling ablation. The known-model policies (Opt, MMR, MNW-EG) are the ceiling, NoAct the floor.

Episodes restart. The paper's objective is a horizon-H (= 20) outcome per group, so learning is run
as E consecutive episodes of H rounds on the same arms (the program's next planning period, or a
new cohort of the same patients): every episode restarts the arms from the domain's start
distribution, the agent keeps everything it learned, and each episode is scored exactly as the
paper scores a run (per-arm total reward over H, Gini of the group means). A single run of E·H
rounds without restarts would instead drift away from the paper's objective (in the diabetes
domain dropout is absorbing, so late rounds would be scored on a depleted cohort). Every policy
meets the same episodes (common random numbers per seed and episode), so the ceiling and the
learners differ only in what they know. A domain's policies, ceiling and floor included, are built
together (``agents.bayes_restless_policies``, the known-model ones with sampling "known") and run as
one compiled program whose params pick the planner and the model: one compilation per domain.

The price of learning, per (domain, planner, learner) at episode e:
``utility_fraction`` = U_learn / U_known, ``gain_fraction`` = (U_learn − U_NoAct) / (U_known − U_NoAct)
(the share of the planning gain over doing nothing that the learner reaches) and
``gini_ratio`` = Gini_learn / Gini_known (above 1: less equitable than the ceiling).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np
import pandas as pd
from tqdm import tqdm

from structbandits.agents.bayes_restless import LEARNING_PLANNERS, bayes_restless_policies
from structbandits.agents.protocol import Policy
from structbandits.agents.restless import PlannerSettings, restless_policy
from structbandits.compiled_memory import release_compiled_programs
from structbandits.envs.rmab.domains import diabetes_domain, maternal_domain, synthetic_domain
from structbandits.envs.rmab.instance import RestlessInstance
from structbandits.errors import ValidationError, check_integer, check_positive
from structbandits.experiments.restless import summarise_restless
from structbandits.experiments.restless_runner import restless_frame, simulate_restless_learning
from structbandits.models.restless import support_concentration
from structbandits.runtime import ensure_configured

__all__ = [
    "LEARNING_DOMAINS",
    "LearningAgent",
    "default_learning_agents",
    "price_of_learning",
    "reproduce_restless_learning",
    "run_restless_learning",
]

EPISODE_LENGTH = 20

LEARNING_DOMAINS: dict[str, Callable[[], RestlessInstance]] = {
    "synthetic": lambda: synthetic_domain(budget=20),
    "maternal": lambda: maternal_domain("A", budget=20),
    "diabetes": lambda: diabetes_domain(0.5, budget=30),
}
"""The learning study's instances: synthetic N=100 B=20; maternal A (60%) N=200 B=20; diabetes λ=0.5 N=300 B=30."""


class LearningAgent(NamedTuple):
    """One policy of the study: ``label``, ``planner`` (Opt / MMR / MNW-EG / NoAct), ``knowledge``
    ("known", "thompson" or "mean") and ``pooling`` ("arm", "group", "partial"; unused when known)."""

    label: str
    planner: str
    knowledge: str
    pooling: str = "partial"


def default_learning_agents(planners: Sequence[str] = ("Opt", "MMR", "MNW-EG")) -> list[LearningAgent]:
    """NoAct, the known-model ``planners``, TS- and CE- learners of each (partial pooling), TS-MMR/arm."""
    agents = [LearningAgent("NoAct", "NoAct", "known")]
    agents += [LearningAgent(p, p, "known") for p in planners]
    agents += [LearningAgent(f"TS-{p}", p, "thompson") for p in planners]
    agents += [LearningAgent(f"CE-{p}", p, "mean") for p in planners]
    if "MMR" in planners:
        agents.append(LearningAgent("TS-MMR/arm", "MMR", "thompson", "arm"))
    return agents


def _policies(agents: Sequence[LearningAgent], instance: RestlessInstance, prior: np.ndarray,
              arm_concentration: float, planner: PlannerSettings) -> list[tuple[Policy, object]]:
    """(functions, params) to run each agent with.

    The learners and the known-model policies of ``LEARNING_PLANNERS`` are built together
    (``bayes_restless_policies``, a known policy as sampling "known"): they share one program, so
    every one of them runs with the first one's functions and its own params, and the domain compiles
    once. A known policy as a member acts exactly as ``restless_policy`` would. Other known policies
    (e.g. Random) are built alone.
    """
    shared = [a for a in agents if a.planner in LEARNING_PLANNERS]
    members = bayes_restless_policies(
        [(a.planner, a.knowledge, a.pooling) for a in shared], prior, instance.groups,
        arm_concentration=arm_concentration if any(a.pooling == "partial" for a in shared) else None,
        max_budget=instance.budget, settings=planner) if shared else []
    params = iter(member.params for member in members)
    out = []
    for agent in agents:
        if agent.planner in LEARNING_PLANNERS:
            out.append((members[0], next(params)))
            continue
        if agent.knowledge != "known":
            raise ValidationError(f"agents: a learner's planner must be one of {list(LEARNING_PLANNERS)}, "
                                  f"got {agent.planner!r}")
        alone = restless_policy(agent.planner, instance.num_arms, instance.group_sizes, instance.budget, planner)
        out.append((alone, alone.params))
    return out


def _episode_frames(trajectory, instance, agent: LearningAgent, **labels) -> pd.DataFrame:
    """``restless_frame`` of every episode, with an ``episode`` column."""
    num_episodes = np.asarray(trajectory.arm_totals).shape[1]
    frames = []
    for e in range(num_episodes):
        episode = jax.tree.map(lambda x: np.asarray(x)[:, e], trajectory)
        frames.append(restless_frame(episode, instance, agent.label, episode=e, planner=agent.planner,
                                     knowledge=agent.knowledge, pooling=agent.pooling if agent.knowledge != "known"
                                     else "", **labels))
    return pd.concat(frames, ignore_index=True)


def run_restless_learning(domains: Sequence[str] = tuple(LEARNING_DOMAINS), *, episodes: int = 10, seeds: int = 5,
                          agents: Sequence[LearningAgent] | None = None, prior_strength: float = 1.0,
                          arm_concentration: float = 10.0, planner: PlannerSettings = PlannerSettings(),
                          seed: int = 0, builders: dict[str, Callable[[], RestlessInstance]] | None = None,
                          out: str | Path | None = None, progress: bool = True) -> pd.DataFrame:
    """Learn the dynamics online in each domain and compare with the known-model policies.

    Parameters
    ----------
    domains : names in ``builders`` (default ``LEARNING_DOMAINS``).
    episodes : E episodes of the domain's horizon per seed (the agent state carries over).
    seeds : simulations per policy (vmapped).
    agents : the policies (default ``default_learning_agents()``).
    prior_strength : pseudo-observations per transition row of the weak prior.
    arm_concentration : κ of the partially pooled (hierarchical) learners.
    planner : planning settings of every planner, known or learning (default: the reference's).
    seed : root seed (common to every policy).
    builders : domain name -> instance builder (default ``LEARNING_DOMAINS``).
    out : a folder for ``learning_results.csv``, ``learning_summary.csv``, ``price_of_learning.csv``
        and the PNG learning curves; None writes nothing.

    Returns
    -------
    Tidy frame, one row per (domain, policy, seed, episode, group): the columns of
    ``restless_frame`` plus ``episode``, ``planner``, ``knowledge``, ``pooling`` and ``wall_s``
    (seconds for that policy's E episodes × seeds, compilation included: the domain's policies share
    one program, compiled by the first).
    """
    ensure_configured()
    episodes = check_integer("episodes", episodes, minimum=1)
    seeds = check_integer("seeds", seeds, minimum=1)
    prior_strength = float(check_positive("prior_strength", prior_strength))
    arm_concentration = float(check_positive("arm_concentration", arm_concentration))
    builders = dict(LEARNING_DOMAINS if builders is None else builders)
    unknown = [d for d in domains if d not in builders]
    if unknown:
        raise ValidationError(f"domains: expected names among {sorted(builders)}, got {unknown[0]!r}")
    agents = default_learning_agents() if agents is None else list(agents)
    key = jax.random.PRNGKey(seed)
    frames = []
    start = time.perf_counter()
    with tqdm(total=len(domains) * len(agents), desc="learning", unit="run", disable=not progress) as bar:
        for domain in domains:
            instance = builders[domain]()
            prior = support_concentration(instance.transitions, strength=prior_strength)
            policies = _policies(agents, instance, prior, arm_concentration, planner)
            for agent, (policy, params) in zip(agents, policies):
                bar.set_postfix_str(f"{domain} {agent.label}")
                began = time.perf_counter()
                trajectory, _ = simulate_restless_learning(instance, policy, key, seeds, episodes, params=params)
                jax.block_until_ready(trajectory)
                frame = _episode_frames(trajectory, instance, agent, domain=domain, budget=instance.budget)
                frame["wall_s"] = time.perf_counter() - began
                frames.append(frame)
                bar.update()
                release_compiled_programs()
    frame = pd.concat(frames, ignore_index=True)
    frame.attrs["wall_s"] = time.perf_counter() - start
    if out is not None:
        from structbandits.experiments.restless_learning_plots import plot_learning_curves

        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        frame.to_csv(folder / "learning_results.csv", index=False)
        summarise_restless(frame, by=("domain", "episode")).to_csv(folder / "learning_summary.csv", index=False)
        price_of_learning(frame).to_csv(folder / "price_of_learning.csv", index=False)
        for domain in domains:
            plot_learning_curves(frame, domain, folder / f"learning_{domain}.png")
    return frame


def price_of_learning(frame: pd.DataFrame, last: int = 1) -> pd.DataFrame:
    """The learners' utility and Gini against their known-model planner, averaged over the last ``last`` episodes.

    Returns one row per (domain, learner): ``planner``, ``knowledge``, ``pooling``, the learner's and
    the known planner's ``utility`` and ``gini`` (Gini of the seed-averaged group means, per
    episode, then averaged), ``utility_fraction``, ``gain_fraction`` (needs NoAct in ``frame``;
    NaN otherwise), ``gini_ratio``, the same three for the first episode (``*_first``), and the
    learner's ``wall_s``.
    """
    last = check_integer("last", last, minimum=1)
    summary = summarise_restless(frame, by=("domain", "episode"))
    meta = frame.drop_duplicates("policy").set_index("policy")[["planner", "knowledge", "pooling"]]
    summary = summary.join(meta, on="policy")
    walls = frame.groupby(["domain", "policy"])["wall_s"].first()
    rows = []
    for domain, cells in summary.groupby("domain", sort=False):
        final = cells["episode"].max()
        window = cells[cells["episode"] > final - last]
        first = cells[cells["episode"] == 0]

        def stats(part, policy):
            row = part[part["policy"] == policy]
            return row["utility"].mean(), row["gini"].mean()

        for policy in cells.loc[cells["knowledge"] != "known", "policy"].unique():
            info = meta.loc[policy]
            out = {"domain": domain, "policy": policy, **info.to_dict()}
            for suffix, part in (("", window), ("_first", first)):
                u, g = stats(part, policy)
                u_known, g_known = stats(part, info["planner"])
                u_none = stats(part, "NoAct")[0] if "NoAct" in set(part["policy"]) else np.nan
                out |= {f"utility{suffix}": u, f"gini{suffix}": g, f"known_utility{suffix}": u_known,
                        f"known_gini{suffix}": g_known, f"utility_fraction{suffix}": u / u_known,
                        f"gain_fraction{suffix}": (u - u_none) / (u_known - u_none),
                        f"gini_ratio{suffix}": g / g_known}
            out["wall_s"] = walls.loc[(domain, policy)]
            rows.append(out)
    return pd.DataFrame(rows)


def reproduce_restless_learning(out: Path, seeds: int, horizon: int | None, progress: bool) -> pd.DataFrame:
    """``structbandits reproduce ermab-learning``: the study with ``horizon`` learning rounds per seed.

    ``horizon`` must be a multiple of the episode length (20): E = horizon / 20 episodes. Writes
    everything ``run_restless_learning`` writes to ``out`` and returns ``price_of_learning``.
    """
    horizon = check_integer("horizon", horizon, minimum=EPISODE_LENGTH)
    if horizon % EPISODE_LENGTH:
        raise ValidationError(f"horizon: expected a multiple of the episode length {EPISODE_LENGTH} "
                              f"(episodes restart every {EPISODE_LENGTH} rounds), got {horizon}")
    frame = run_restless_learning(episodes=horizon // EPISODE_LENGTH, seeds=seeds, out=out, progress=progress)
    return price_of_learning(frame)
