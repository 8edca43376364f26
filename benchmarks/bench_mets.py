"""Per-round cost of mixed-effect Thompson sampling (meTS) against three baselines, as K grows.

What it measures
----------------
One round is one ``act`` and one ``update``: draw a per-arm context (K, d) ~ Uniform[-1, 1], sample,
pull argmax_i x_iᵀθ̃_i, observe y = x_aᵀθ_a + N(0, σ²) from a fixed θ, condition on it. The problem
is the mixed-effect bandit with L effects: mixing b ~ Uniform[-1, 1]^(K×L), vec Ψ ~ N(0, 3 I),
θ_i | Ψ ~ N(Σ_l b_il ψ_l, I), σ = 1; every sampler below is given exactly this prior.

1. meTS in JAX: ``mets(...)`` act + update in a ``lax.scan`` over rounds, ``vmap`` over seeds, one
   ``jit``. Compile time (``lower().compile()``) is reported apart from the best of 3 warm calls,
   which give µs per seed-round. Expected to grow about linearly in K.
2. Dense joint posterior: the same Thompson sampler without the mixed-effect algebra. The exact
   Gaussian over (vec Ψ, θ) of size N = L·d + K·d is held as a dense precision; each round takes its
   (N, N) Cholesky and draws once, then adds the observation. Jitted ``lax.scan``, one seed, µs per
   round. Cubic in K, so it only runs while N <= --dense-max.
3. Thompson sampling re-fitted by NUTS each round: one call of ``posterior(mixed_effect_linear,
   data, method="nuts", num_draws=100, num_warmup=100, num_chains=1)`` on ``rounds`` random-arm
   observations, K = --arms[0] only. The first call (compile) is reported apart; a second call on
   other data of the same shapes is the per-round cost.
4. meTS in NumPy/SciPy: the same sampler as a Python loop over rounds on one seed (per-arm draws
   batched with ``np.linalg.solve``, a dense (L·d, L·d) effect precision updated with ``np.kron``,
   SciPy Cholesky and triangular solves), best of 3 runs. Skipped when extrapolating the previous K
   linearly says one run would take > 60 s.

Ratios are per round against meTS JAX per seed-round, all measured in this process. The mean final
cumulative expected regret of each sampler is printed as a sanity check (the dense sampler draws
from the same joint posterior as meTS, so their regrets should agree up to seed noise).

Targets (from the issue): a meTS round at least 100x faster than a NUTS-refit TS round, and at
least 10x faster than the NumPy implementation when vmapped over seeds.

Round cost at large K (issue 22 item 2; ``--part round-cost``)
-------------------------------------------------------------
The same meTS JAX round at K = --perf-arms (default 10,000), L = 10, d = 5, --perf-seeds seeds, in
one process, µs per seed-round (best of 3 warm calls):

- before: ``agents/mets.py`` as of commit ``round_cost.BEFORE`` (loaded from git), which kept the
  per-arm evidence (P_i, u_i) in the state; XLA copied both (seeds, K, d, d) / (seeds, K, d) arrays
  whole twice a round;
- after, ``sampling="arms"`` (the default): the evidence recomputed for the pulled arm, no copies; the
  same normals, so the same actions (the regret column must equal before's);
- after, ``sampling="scores"``: one normal per arm for its score x_iᵀθ̃_i given Ψ̃ (the same law of
  the action, other draws: the regret differs by seed noise only);
- each also with the seeds in batches (``jax.lax.map(..., batch_size=b)`` for b in --seed-batches,
  vmapped inside a batch): b seeds' state (≈ 8·K·(3d² + d + L) bytes each, 11 MB at K = 10,000)
  stays in cache across the operations of a round, where all seeds vmapped stream S times as much.
  The experiment runner's ``seed_batch`` is the same knob.

Lower bound per seed-round (``round_cost.lower_bound_us``): the bytes a round must stream, its flops
and its random draws, at rates measured in the same run (``round_cost.machine_rates``):

- bytes: mixing b (K·L), Σ0_i⁻¹ (K·d²), B_i (K·d), L_i⁻¹ (K·d²) read once, the context (K·d) written
  by the environment and read: 8·K·(L + 2d² + 3d) = 6.0 MB at K = 10,000, L = 10, d = 5;
- flops: Σ_l b_il ψ̃_l (2KLd), h_i = Σ0_i⁻¹(·) + B_i (2Kd²), then "arms": L_i⁻¹h_i, L_i⁻ᵀ(·) and the
  scores (4Kd² + 2Kd) = 2.6 Mflop; "scores": L_i⁻¹h_i, L_i⁻¹x_i and two dots (4Kd² + 4Kd) = 2.7 Mflop;
  the update is O(d³ + L²d²), nothing at this K;
- draws: normals K·d + L·d ("arms", 50,050) or K + L·d ("scores", 10,050); uniforms K·d (the context).
Bound = max(bytes / bandwidth, flops / flop rate) + draws × cost per draw. The lower bound of a
round is the "scores" one (a Thompson round over K arms needs a normal per arm, no fewer); column
"x bound" divides by it, "x own" by the bound with the variant's own draws. The issue's target is a
round within 3x of the lower bound. What separates "arms" from "scores" is almost all the 40,000 extra
normals; ``jax.random.normal(key, (K, 5))`` also costs about 2.5x ``jax.random.normal(key, (5 K,))``
(the same numbers) on XLA's CPU backend, whose inverse-erf loop over a last axis of 5 is not vectorised,
and fusion puts the draw in the (K, d) loop that consumes it.

Normal draws of ``sampling="arms"`` (``--part normals``)
------------------------------------------------------
The (K, d) normals are about half of a round at K = 10,000, d = 5: ``jax.random.normal(key, (K, d))`` costs
about 2.5x ``jax.random.normal(key, (K·d,))`` (the same numbers) materialised on XLA's CPU backend, whose
inverse-erf loop over a last axis of 5 does not vectorise. This part times the meTS round (as above,
``sampling="arms"``) with the normals drawn in other layouts that give the same values (``mets_core._arm_normals``
replaced for the measurement; each variant's regret must equal the default's), and says whether XLA compiled
a different program (the act's optimised HLO without metadata):

- ``(K, d)``: ``jax.random.normal(key, (K, d))``, as meTS drew them before;
- ``flat``: ``jax.random.normal(key, (K·d,)).reshape(K, d)``, what meTS does now (identical values: threefry
  counts over the flattened shape; XLA hashes the counters in a flat loop, ~1.1x faster a round at K = 10,000);
- ``flat + barrier`` / ``(K, d) + barrier``: the same under ``jax.lax.optimization_barrier``, meant to make
  XLA materialise the normals before the substitution instead of fusing their generation into it.

A (d, K) draw transposed is not among them: its values differ. The normals alone (materialised, no consumer)
are timed too: (K, d), flat, and flat reshaped to (K, d). What the measurements show (and the act's HLO): a draw
is two loops, threefry's hash of the counters (a while loop over an array of the draw's shape) and the
inverse-erf transform of the bits, which XLA computes in a loop over the shape of the array it writes. Drawn
flat, the hash runs flat (the gain in the round); the transform is fast only while its output stays flat, and
reshaped, or fused into the (K, d)-shaped add that consumes it (L_i⁻¹h_i + z_i), it runs in a (K, d) loop
again. The CPU pipeline expands ``optimization_barrier`` before fusion, so the barrier variants compile to the
same programs as without it. Materialising the normals flat before the add (possible only by
steering XLA with extra operations) would also change the rounding of the draws: fused, √2·erf⁻¹(u) + L_i⁻¹h_i
is one fused multiply-add, so the draws would no longer equal the current ones bit for bit.

Run
---
    .venv/bin/python benchmarks/bench_mets.py [--arms 10 100 1000 10000 --effects 10 --features 5 --seeds 20 --rounds 50]
    .venv/bin/python benchmarks/bench_mets.py --part round-cost [--perf-arms 10000 --perf-seeds 20 --perf-rounds 50 --seed-batches 1 4]
    .venv/bin/python benchmarks/bench_mets.py --part normals [--perf-arms 10000 --perf-seeds 20 --perf-rounds 50 --repeats 5]

Run it as a script: it imports the rank-one Cholesky update and ``timed`` from ``bench_lints.py`` and
``round_cost.py`` next to it.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from bench_lints import cholesky_rank_one_update, timed
from round_cost import BEFORE, Work, best_seconds, describe, lower_bound_us, machine_rates, module_at
from scipy.linalg import cho_solve, cholesky, solve_triangular

import structbandits
from structbandits.agents import mets
from structbandits.inference.conjugate import GaussianInfo, gaussian_sample
from structbandits.inference.posterior import posterior
from structbandits.models.mixed_effect import mixed_effect_linear

NOISE_SCALE, EFFECT_VAR = 1.0, 3.0
NUMPY_LIMIT_S = 60.0


class Problem(NamedTuple):
    """One mixed-effect bandit: ``mixing`` (K, L), true ``theta`` (K, d), ``features`` d."""

    mixing: np.ndarray
    theta: np.ndarray
    features: int


def make_problem(arms: int, effects: int, features: int, seed: int = 0) -> Problem:
    """Mixing ~ Uniform[-1, 1], and one θ drawn from the model's prior (the fixed environment)."""
    rng = np.random.default_rng(seed)
    mixing = rng.uniform(-1.0, 1.0, (arms, effects))
    psi = np.sqrt(EFFECT_VAR) * rng.standard_normal((effects, features))
    return Problem(mixing, mixing @ psi + rng.standard_normal((arms, features)), features)


def observe(key: jax.Array, theta: jax.Array, context: jax.Array, action: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Reward of ``action`` and its expected regret under per-arm ``context`` (K, d)."""
    means = jnp.sum(theta * context, axis=-1)
    return means[action] + NOISE_SCALE * jax.random.normal(key), means.max() - means[action]


def jax_mets(problem: Problem, rounds: int, build: Callable = mets, seed_batch: int | None = None,
             **options) -> Callable[[jax.Array], jax.Array]:
    """Seed keys (S,) -> final cumulative regret (S,), meTS act + update scanned over ``rounds``.

    ``build`` is the ``mets`` constructor (this package's, or the one before issue 22), ``options`` its
    keyword options; ``seed_batch`` None vmaps all seeds, b runs them b at a time (``lax.map``)."""
    (arms, effects), d = problem.mixing.shape, problem.features
    policy = build(problem.mixing, np.zeros((effects, d)), EFFECT_VAR * np.eye(effects * d), np.eye(d), NOISE_SCALE,
                   **options)
    theta = jnp.asarray(problem.theta)

    def run(key: jax.Array) -> jax.Array:
        def step(state, round_key):
            context_key, act_key, noise_key = jax.random.split(round_key, 3)
            context = jax.random.uniform(context_key, (arms, d), minval=-1.0, maxval=1.0)
            action, _ = policy.act(state, act_key, context)
            reward, regret = observe(noise_key, theta, context, action)
            return policy.update(state, context, action, reward), regret

        init_key, loop_key = jax.random.split(key)
        _, regrets = jax.lax.scan(step, policy.init(init_key), jax.random.split(loop_key, rounds))
        return regrets.sum()

    if seed_batch is None:
        return jax.vmap(run)
    return lambda keys: jax.lax.map(run, keys, batch_size=seed_batch)


def jax_dense(problem: Problem, rounds: int) -> Callable[[jax.Array], jax.Array]:
    """Seed key -> final cumulative regret, Thompson sampling from the dense joint posterior of (vec Ψ, θ)."""
    (arms, effects), d = problem.mixing.shape, problem.features
    lift = np.kron(problem.mixing, np.eye(d))  # (K d, L d): θ = lift @ vec Ψ + N(0, Σ0)
    effect_cov = EFFECT_VAR * np.eye(effects * d)
    joint_cov = np.block([[effect_cov, effect_cov @ lift.T],
                          [lift @ effect_cov, lift @ effect_cov @ lift.T + np.eye(arms * d)]])
    prior_precision = jnp.asarray(cho_solve((cholesky(joint_cov, lower=True), True), np.eye(len(joint_cov))))
    theta, offset = jnp.asarray(problem.theta), effects * d

    def run(key: jax.Array) -> jax.Array:
        def step(carry, round_key):
            precision, info = carry
            context_key, draw_key, noise_key = jax.random.split(round_key, 3)
            context = jax.random.uniform(context_key, (arms, d), minval=-1.0, maxval=1.0)
            joint = gaussian_sample(GaussianInfo(jnp.linalg.cholesky(precision), info), draw_key)
            action = jnp.argmax(jnp.sum(joint[offset:].reshape(arms, d) * context, axis=-1))
            reward, regret = observe(noise_key, theta, context, action)
            x, block = context[action], offset + action * d + jnp.arange(d)
            precision = precision.at[block[:, None], block[None, :]].add(jnp.outer(x, x) / NOISE_SCALE**2)
            return (precision, info.at[block].add(x * reward / NOISE_SCALE**2)), regret

        carry = (prior_precision, jnp.zeros(len(prior_precision)))  # prior mean 0, so information 0
        return jax.lax.scan(step, carry, jax.random.split(key, rounds))[1].sum()

    return run


def compile_and_time(fn: Callable[[jax.Array], jax.Array], keys: jax.Array) -> tuple[float, float, float]:
    """Compile seconds, best-of-3 warm seconds, and the mean of ``fn(keys)``."""
    compiled, compile_s = timed(lambda: jax.jit(fn).lower(keys).compile())
    result = jax.block_until_ready(compiled(keys))
    return compile_s, min(timed(lambda: jax.block_until_ready(compiled(keys)))[1] for _ in range(3)), float(result.mean())


def numpy_mets(problem: Problem, rounds: int, seed: int = 0) -> float:
    """Final cumulative expected regret of meTS written in NumPy/SciPy (Σ0 = I, prior mean 0)."""
    rng = np.random.default_rng(seed)
    (arms, effects), d = problem.mixing.shape, problem.features
    chol = np.broadcast_to(np.eye(d), (arms, d, d)).copy()  # Cholesky of C_i = Σ0⁻¹ + G_i
    gram, moment = np.zeros((arms, d, d)), np.zeros((arms, d))
    evidence_precision, evidence_info = np.zeros((arms, d, d)), np.zeros((arms, d))
    effect_precision, effect_info = np.eye(effects * d) / EFFECT_VAR, np.zeros(effects * d)
    regret = 0.0
    for _ in range(rounds):
        context = rng.uniform(-1.0, 1.0, (arms, d))
        effect_chol = cholesky(effect_precision, lower=True)
        psi = cho_solve((effect_chol, True), effect_info) + solve_triangular(
            effect_chol, rng.standard_normal(effects * d), lower=True, trans="T")
        info = problem.mixing @ psi.reshape(effects, d) + moment  # Σ0⁻¹ Σ_l b_il ψ̃_l + B_i
        whitened = np.linalg.solve(chol, info[..., None])[..., 0] + rng.standard_normal((arms, d))
        draws = np.linalg.solve(np.swapaxes(chol, 1, 2), whitened[..., None])[..., 0]  # C⁻¹ info + L⁻ᵀ z
        action = int(np.argmax(np.sum(draws * context, axis=-1)))
        means = np.sum(problem.theta * context, axis=-1)
        x, reward = context[action], means[action] + NOISE_SCALE * rng.standard_normal()
        regret += means.max() - means[action]
        gram[action] += np.outer(x, x) / NOISE_SCALE**2
        moment[action] += x * reward / NOISE_SCALE**2
        cholesky_rank_one_update(chol[action], x / NOISE_SCALE)
        whitened_gram = solve_triangular(chol[action], gram[action], lower=True)  # P = G − G C⁻¹ G
        new_precision = gram[action] - whitened_gram.T @ whitened_gram
        new_info = moment[action] - whitened_gram.T @ solve_triangular(chol[action], moment[action], lower=True)
        b = problem.mixing[action]
        effect_precision += np.kron(np.outer(b, b), new_precision - evidence_precision[action])
        effect_info += np.kron(b, new_info - evidence_info[action])
        evidence_precision[action], evidence_info[action] = new_precision, new_info
    return regret


def nuts_data(problem: Problem, observations: int, seed: int) -> dict[str, object]:
    """``mixed_effect_linear`` arguments with ``observations`` uniformly random pulls."""
    rng = np.random.default_rng(seed)
    (arms, effects), d = problem.mixing.shape, problem.features
    contexts, actions = rng.uniform(-1.0, 1.0, (observations, d)), rng.integers(0, arms, observations)
    rewards = np.sum(contexts * problem.theta[actions], axis=-1) + NOISE_SCALE * rng.standard_normal(observations)
    return dict(mixing=problem.mixing, effect_mean=np.zeros((effects, d)), effect_cov=EFFECT_VAR * np.eye(effects * d),
                action_cov=np.broadcast_to(np.eye(d), (arms, d, d)).copy(), noise_scale=NOISE_SCALE,
                contexts=contexts, actions=actions, rewards=rewards)


def nuts_refit(problem: Problem, observations: int) -> tuple[float, float]:
    """Seconds of the first (compiling) and of a second ``posterior(..., method="nuts")`` call."""
    def fit(seed: int) -> float:
        return timed(lambda: posterior(mixed_effect_linear, nuts_data(problem, observations, seed), method="nuts",
                                       key=jax.random.PRNGKey(seed), num_draws=100, num_warmup=100, num_chains=1))[1]
    return fit(1), fit(2)


def round_work(arms: int, effects: int, d: int, sampling: str) -> Work:
    """The bytes, flops and draws one seed-round must do at least (module docstring)."""
    flops = 2 * arms * effects * d + 2 * arms * d * d + (4 * arms * d * d + (2 if sampling == "arms" else 4) * arms * d)
    normals = (arms * d if sampling == "arms" else arms) + effects * d
    return Work(bytes=8 * arms * (effects + 2 * d * d + 3 * d), flops=flops, normals=normals, uniforms=arms * d)


def round_cost(arms_list: list[int], effects: int, d: int, seeds: int, rounds: int, seed_batches: list[int]) -> None:
    """Issue 22 item 2: µs per seed-round before / after, per sampling and seed batching, against the bound."""
    before = module_at(BEFORE, "structbandits/agents/mets.py", "mets_before")
    rates = machine_rates()
    keys = jax.random.split(jax.random.PRNGKey(0), seeds)
    print(f"\nmeTS round cost (issue 22): L={effects}, d={d}, {seeds} seeds, {rounds} rounds; JAX {jax.__version__} on "
          f"{jax.default_backend()} ({jax.devices()[0].device_kind}), {os.cpu_count()} CPU cores, load average "
          f"{os.getloadavg()[0]:.1f}\n{describe(rates)}")
    if before is None:
        print(f"  before: not measured (no git history here to load agents/mets.py at {BEFORE[:7]})")
    for arms in arms_list:
        problem = make_problem(arms, effects, d)
        bounds = {sampling: lower_bound_us(round_work(arms, effects, d, sampling), rates) for sampling in ("arms", "scores")}
        print(f"\nK={arms}: lower bound {bounds['scores']:,.0f} µs per seed-round (the draws a Thompson round needs: one "
              f"normal per arm); {bounds['arms']:,.0f} µs with d normals per arm (sampling='arms')")
        for sampling in ("scores", "arms"):
            w = round_work(arms, effects, d, sampling)
            print(f"  {sampling}: {w.bytes / 1e6:.1f} MB, {w.flops / 1e6:.2f} Mflop, {w.normals:,.0f} normals, "
                  f"{w.uniforms:,.0f} uniforms")
        print(f"{'variant':<52}{'µs/seed-round':>14}{'x bound':>9}{'x own':>7}{'speed-up':>10}{'compile s':>11}"
              f"{'regret':>9}")
        variants = [] if before is None else [(f"before ({BEFORE[:7]}), seeds vmapped", before.mets, None, "arms")]
        for sampling in ("arms", "scores"):
            variants += [(f"after, sampling={sampling!r}, seeds vmapped", mets, None, sampling)]
            variants += [(f"after, sampling={sampling!r}, {b} seed(s) per batch", mets, b, sampling)
                         for b in seed_batches if b < seeds]
        reference = None
        for name, build, batch, sampling in variants:
            options = {} if build is not mets else {"sampling": sampling}
            fn = jax.jit(jax_mets(problem, rounds, build, batch, **options))
            compiled, compile_s = timed(lambda: fn.lower(keys).compile())
            regret = float(jax.block_until_ready(compiled(keys)).mean())
            us = 1e6 * best_seconds(lambda: compiled(keys)) / (seeds * rounds)
            reference = us if reference is None else reference
            print(f"{name:<52}{us:>14,.0f}{us / bounds['scores']:>8.1f}x{us / bounds[sampling]:>6.1f}x"
                  f"{reference / us:>9.2f}x{compile_s:>11.1f}{regret:>9.2f}", flush=True)
    print("\nx bound: against the lower bound; x own: against the bound with the variant's own draws; speed-up: "
          "against the first row; regret: mean final cumulative expected regret (before and after with "
          "sampling='arms' draw the same normals, so theirs agree)")


def _normals_default(key, k, d, dtype):
    return jax.random.normal(key, (k, d), dtype=dtype)


def _normals_flat(key, k, d, dtype):
    return jax.random.normal(key, (k * d,), dtype=dtype).reshape(k, d)


NORMAL_LAYOUTS = {
    "(K, d)": _normals_default,
    "flat": _normals_flat,
    "(K, d) + barrier": lambda key, k, d, dtype: jax.lax.optimization_barrier(_normals_default(key, k, d, dtype)),
    "flat + barrier": lambda key, k, d, dtype: jax.lax.optimization_barrier(
        jax.random.normal(key, (k * d,), dtype=dtype)).reshape(k, d),
}


def _program_text(compiled) -> str:
    """Optimised HLO without metadata (names of source lines differ between variants, not the program)."""
    text = re.sub(r", metadata=\{[^}]*\}", "", compiled.as_text())
    return "\n".join(line for line in text.splitlines() if line.startswith((" ", "%", "ROOT", "ENTRY")))


def normal_layouts(arms_list: list[int], effects: int, d: int, seeds: int, rounds: int, repeats: int) -> None:
    """The meTS round with the (K, d) normals of sampling="arms" drawn in other layouts of the same values."""
    mets_module = sys.modules["structbandits.agents.mets_core"]  # where ``mets`` draws its normals
    default = mets_module._arm_normals
    rates = machine_rates()
    keys = jax.random.split(jax.random.PRNGKey(0), seeds)
    print(f"\nmeTS normals' layout (sampling='arms'): L={effects}, d={d}, {seeds} seeds, {rounds} rounds, best of "
          f"{repeats} interleaved calls; load average {os.getloadavg()[0]:.1f}\n{describe(rates)}")
    for arms in arms_list:
        problem = make_problem(arms, effects, d)
        bound = lower_bound_us(round_work(arms, effects, d, "scores"), rates)
        own = lower_bound_us(round_work(arms, effects, d, "arms"), rates)
        # the flat draw returned flat: returned as (K, d), XLA computes it in a (K, d) loop again
        draw = {name: jax.jit(lambda key, shape=shape: jax.random.normal(key, shape)).lower(keys[0]).compile()
                for name, shape in (("(K, d)", (arms, d)), ("flat", (arms * d,)), ("flat, reshaped", (arms, d)))}
        draw["flat, reshaped"] = jax.jit(lambda key: _normals_flat(key, arms, d, jnp.float64)).lower(keys[0]).compile()
        draw_s = {name: best_seconds(lambda: fn(keys[0]), 2 * repeats) for name, fn in draw.items()}
        same_values = bool(np.array_equal(draw["(K, d)"](keys[0]), np.reshape(draw["flat"](keys[0]), (arms, d))))
        alone = ", ".join(f"{name} {1e6 * seconds:,.0f} µs" for name, seconds in draw_s.items())
        print(f"\nK={arms}: the {arms * d:,} normals alone, materialised: {alone}; same values {same_values}; "
              f"lower bound {bound:,.0f} µs per seed-round ({own:,.0f} µs with d normals per arm)")
        compiled, programs, regrets = {}, {}, {}
        try:
            for name, layout in NORMAL_LAYOUTS.items():
                mets_module._arm_normals = layout
                fn = jax.jit(jax_mets(problem, rounds, mets, None, sampling="arms"))
                compiled[name] = fn.lower(keys).compile()
                regrets[name] = np.asarray(jax.block_until_ready(compiled[name](keys)))
                policy = mets(problem.mixing, np.zeros((effects, d)), EFFECT_VAR * np.eye(effects * d), np.eye(d),
                              NOISE_SCALE)
                context = jnp.zeros((arms, d))
                programs[name] = _program_text(jax.jit(policy.act).lower(policy.init(keys[0]), keys[0], context).compile())
        finally:
            mets_module._arm_normals = default
        seconds = {name: [] for name in compiled}
        for _ in range(repeats):  # interleaved, so a change of load hits every variant alike
            for name, fn in compiled.items():
                seconds[name].append(best_seconds(lambda: fn(keys), 1))
        print(f"{'normals':<20}{'µs/seed-round':>14}{'x bound':>9}{'x own':>7}{'speed-up':>10}{'same regrets':>14}"
              f"  program (the first variant compiled to the same act)")
        reference = min(seconds["(K, d)"])  # speed-up and regrets against the draw meTS used before
        for name in compiled:
            us = 1e6 * min(seconds[name]) / (seeds * rounds)
            same_as = next(other for other in compiled if programs[other] == programs[name])
            print(f"{name:<20}{us:>14,.0f}{us / bound:>8.1f}x{us / own:>6.1f}x{reference / min(seconds[name]):>9.2f}x"
                  f"{str(np.array_equal(regrets[name], regrets['(K, d)'])):>14}  {same_as}", flush=True)


def main() -> None:
    structbandits.configure()  # float64 and one LAPACK thread, as the CLI runs
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arms", type=int, nargs="+", default=[10, 100, 1000, 10000], help="numbers of arms K")
    parser.add_argument("--effects", type=int, default=10, help="number of effects L")
    parser.add_argument("--features", type=int, default=5, help="context dimension d")
    parser.add_argument("--seeds", type=int, default=20, help="seeds vmapped by meTS JAX")
    parser.add_argument("--rounds", type=int, default=50, help="rounds per run (and NUTS observations)")
    parser.add_argument("--dense-max", type=int, default=3000, help="largest joint dimension L·d + K·d for the dense baseline")
    parser.add_argument("--part", choices=["all", "baselines", "round-cost", "normals"], default="all",
                        help="the baselines table, the issue-22 round cost at large K, or both")
    parser.add_argument("--perf-arms", type=int, nargs="+", default=[10000], help="K for the round cost")
    parser.add_argument("--perf-seeds", type=int, default=20, help="seeds for the round cost")
    parser.add_argument("--perf-rounds", type=int, default=50, help="rounds for the round cost")
    parser.add_argument("--seed-batches", type=int, nargs="*", default=[1, 4], help="seeds per batch to compare")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved calls per variant (normals part)")
    args = parser.parse_args()
    if args.part in ("all", "baselines"):
        baselines(args)
    if args.part in ("all", "round-cost"):
        round_cost(args.perf_arms, args.effects, args.features, args.perf_seeds, args.perf_rounds, args.seed_batches)
    if args.part in ("all", "normals"):
        normal_layouts(args.perf_arms, args.effects, args.features, args.perf_seeds, args.perf_rounds, args.repeats)


def baselines(args: argparse.Namespace) -> None:
    """The table of meTS JAX against the dense joint posterior, NumPy and NUTS-refit TS."""
    L, d, seeds, rounds = args.effects, args.features, args.seeds, args.rounds

    print(f"meTS per round (act + update): L={L} effects, d={d} features, {seeds} seeds, {rounds} rounds, σ={NOISE_SCALE}")
    print(f"machine: {os.cpu_count()} CPU cores, JAX {jax.__version__} on {jax.default_backend()} "
          f"({jax.devices()[0].device_kind}), x64 {jax.config.jax_enable_x64}")
    print("cost: µs per round (meTS JAX: per seed-round); ratio: baseline / meTS JAX; "
          "regret: mean final cumulative expected regret\n")
    print(f"{'':>8}{' meTS JAX ':-^26}  {' dense joint ':-^25}  {' meTS NumPy ':-^25}")
    print(f"{'K':>6}{'µs':>10}{'compile s':>10}{'regret':>8}  {'µs':>11}{'ratio':>8}{'regret':>8}  "
          f"{'µs':>11}{'ratio':>8}{'regret':>8}")
    mets_us: dict[int, float] = {}
    numpy_ratios: dict[int, float] = {}
    numpy_s_per_arm_round = 0.0
    for arms in args.arms:
        problem = make_problem(arms, L, d)
        compile_s, warm_s, regret = compile_and_time(jax_mets(problem, rounds), jax.random.split(jax.random.PRNGKey(0), seeds))
        mets_us[arms] = 1e6 * warm_s / (seeds * rounds)
        row = f"{arms:>6}{mets_us[arms]:>10.1f}{compile_s:>10.2f}{regret:>8.1f}  "
        if L * d + arms * d <= args.dense_max:
            _, dense_s, dense_regret = compile_and_time(jax_dense(problem, rounds), jax.random.PRNGKey(1))
            dense_us = 1e6 * dense_s / rounds
            row += f"{dense_us:>11.1f}{dense_us / mets_us[arms]:>7.1f}x{dense_regret:>8.1f}  "
        else:
            row += f"{f'skipped (cubic: N = {L * d + arms * d})':>27}  "
        if numpy_s_per_arm_round * arms * rounds > NUMPY_LIMIT_S:
            row += f"{f'skipped (> {NUMPY_LIMIT_S:.0f} s)':>27}"
        else:
            runs = [timed(lambda: numpy_mets(problem, rounds)) for _ in range(3)]
            numpy_regret, numpy_s = runs[0][0], min(seconds for _, seconds in runs)
            numpy_s_per_arm_round = numpy_s / (arms * rounds)
            numpy_ratios[arms] = 1e6 * numpy_s / rounds / mets_us[arms]
            row += f"{1e6 * numpy_s / rounds:>11.1f}{numpy_ratios[arms]:>7.1f}x{numpy_regret:>8.1f}"
        print(row, flush=True)

    arms = args.arms[0]
    first_s, nuts_s = nuts_refit(make_problem(arms, L, d), rounds)
    nuts_ratio = 1e6 * nuts_s / mets_us[arms]
    print(f"\nNUTS-refit TS, K={arms}: posterior(mixed_effect_linear, {rounds} observations, method='nuts', "
          f"100 warmup + 100 draws, 1 chain)\n  first call (compile) {first_s:.2f} s; second call {nuts_s:.2f} s "
          f"per round = {nuts_ratio:,.0f}x meTS JAX")
    if len(args.arms) > 1:
        print(f"  K={', '.join(map(str, args.arms[1:]))}: not run (a NUTS refit over all K·d action parameters "
              "every round is impractical)")
    print("\ntargets from the issue:")
    print(f"  NUTS-refit / meTS JAX >= 100x (K={arms}): {nuts_ratio:,.0f}x, {'met' if nuts_ratio >= 100 else 'NOT met'}")
    for arms, ratio in numpy_ratios.items():
        print(f"  NumPy / meTS JAX ({seeds} seeds vmapped) >= 10x (K={arms}): {ratio:.1f}x, "
              f"{'met' if ratio >= 10 else 'NOT met'}")


if __name__ == "__main__":
    main()
