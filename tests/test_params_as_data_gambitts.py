"""Every numeric hyperparameter of the GAMBITTS agents is data (``tests/params_as_data.py``).

One case per constructor × hyperparameter: two policies built with two values of it are the same
program of their params (equal jaxprs of 8 simulated rounds, propensity estimates included). One case
per constructor (``END_TO_END``) also runs both end to end: one compiled program for both values, policy
A's functions with B's params reproduce policy B bit for bit, and the two values play differently;
those run without propensity draws (half the compile time). Tiny instances: K = 3 prompts, C = 2
context cells, S = 2 treatment columns; ensembles of 2 members that train from round 2.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from params_as_data import check_params_are_data
from structbandits.agents.ens_gambitts import ens_fo_gambitts, ens_po_gambitts
from structbandits.agents.gambitts import fo_gambitts, optional_prompting, po_gambitts
from structbandits.agents.standard_ts import standard_ts

K, C, S, N = 3, 2, 2, 4
FEATURES = [0, 1]
DRAWS = np.random.default_rng(0).normal(size=(K, C, N, S))
COUNTS = np.array([[4, 3], [2, 4], [4, 1]])
ENSEMBLE = dict(num_members=2, num_hidden=3, warmup=2, batch_size=4, buffer_size=8, mc_draws=3)
# (constructor, hyperparameter) pairs also checked by running them.
END_TO_END = {("fo", "reward_noise_scale"), ("po", "treatment_draws"), ("ens_po", "learning_rate"),
              ("ens_fo", "niw_kappa"), ("optional", "po:reward_noise_scale")}


class Ctx(NamedTuple):
    cell: jax.Array
    treatments: jax.Array


def context(key):
    cell_key, z_key = jax.random.split(key)
    return Ctx(jax.random.randint(cell_key, (), 0, C), jax.random.normal(z_key, (K, S), jnp.float64))


def reward(key, x, action):
    # Prompts 1..K of optional prompting see treatments[action - 1]; plain prompters treatments[action].
    z = x.treatments[jnp.minimum(action, K - 1)]
    return 3.0 + z @ jnp.array([1.5, -0.5]) + 0.3 * jax.random.normal(key, (), jnp.float64)


def _run(constructor, name, build, value_a, value_b):
    run = (constructor, name) in END_TO_END
    m = 0 if run else 4  # propensity draws
    check_params_are_data(lambda v: build(v, m), value_a, value_b, context, reward, run=run)


PSI_A, PSI_B = np.eye(S), np.array([[2.0, 0.3], [0.3, 0.5]])

FO_CASES = {
    "reward_prior_mean": ((77.0, 0.0), (70.0, 0.5)),
    "reward_prior_precision": ((0.01, 1.0), (0.2, 3.0)),
    "reward_noise_scale": (1.0, 2.5),
    "niw_mean": (np.zeros(S), np.array([0.5, -1.0])),
    "niw_kappa": (1.0, 3.0),
    "niw_psi": (PSI_A, PSI_B),
    "niw_nu": (2.0, 4.5),
}


@pytest.mark.parametrize("name", sorted(FO_CASES))
def test_fo_gambitts_hyperparameter_is_data(name):
    _run("fo", name, lambda v, m: fo_gambitts(K, C, FEATURES, propensity_draws=m, **{name: v}), *FO_CASES[name])


PO_CASES = {
    "reward_prior_mean": ((77.0, 0.0), (70.0, 0.5)),
    "reward_prior_precision": ((0.01, 1.0), (0.2, 3.0)),
    "reward_noise_scale": (1.0, 2.5),
    "treatment_draws": (DRAWS, DRAWS + np.array([0.7, -0.4])),
    "treatment_counts": (np.full((K, C), N), COUNTS),
}


@pytest.mark.parametrize("name, num_draws", [(name, None) for name in sorted(PO_CASES)]
                         + [("treatment_draws", 2), ("treatment_counts", 2)])
def test_po_gambitts_hyperparameter_is_data(name, num_draws):
    # num_draws = 2: each seed subsamples the offline draws in init, from the params.
    def build(v, m):
        if name == "treatment_draws":
            return po_gambitts(v, FEATURES, num_draws=num_draws, propensity_draws=m)
        return po_gambitts(DRAWS, FEATURES, num_draws=num_draws, propensity_draws=m, **{name: v})

    _run("po" if num_draws is None else "po_subsampled", name, build, *PO_CASES[name])


ENS_CASES = {
    "learning_rate": (0.1, 0.02),
    "perturbation_scale": (1.0, 2.0),
    "prior_scale": (1.0, 0.3),
}
ENS_PO_CASES = {**ENS_CASES, "treatment_draws": PO_CASES["treatment_draws"],
                "treatment_counts": PO_CASES["treatment_counts"]}


@pytest.mark.parametrize("name", sorted(ENS_PO_CASES))
def test_ens_po_gambitts_hyperparameter_is_data(name):
    # prior_scale given throughout so that the anchor term (σ² / (n σ0²)) is part of every run. N = 4
    # rows > mc = 3: the treatments are resampled (the next test scores weighted stored rows).
    def build(v, m):
        options = {"prior_scale": 1.0, "propensity_draws": m, **ENSEMBLE}
        draws = DRAWS
        if name == "treatment_draws":
            draws = v
        else:
            options[name] = v
        return ens_po_gambitts(draws, FEATURES, **options)

    _run("ens_po", name, build, *ENS_PO_CASES[name])


@pytest.mark.parametrize("name", ["treatment_draws", "treatment_counts"])
def test_ens_po_gambitts_subsampled_offline_draws_are_data(name):
    # num_draws = 2 rows per seed, subsampled in init from the params, <= mc = 3: weighted rows are scored.
    def build(v, m):
        if name == "treatment_draws":
            return ens_po_gambitts(v, FEATURES, num_draws=2, propensity_draws=m, **ENSEMBLE)
        return ens_po_gambitts(DRAWS, FEATURES, num_draws=2, treatment_counts=v, propensity_draws=m, **ENSEMBLE)

    _run("ens_po_subsampled", name, build, *ENS_PO_CASES[name])


ENS_FO_CASES = {**ENS_CASES, **{n: FO_CASES[n] for n in ("niw_mean", "niw_kappa", "niw_psi", "niw_nu")}}


@pytest.mark.parametrize("name", sorted(ENS_FO_CASES))
def test_ens_fo_gambitts_hyperparameter_is_data(name):
    _run("ens_fo", name, lambda v, m: ens_fo_gambitts(K, C, FEATURES, propensity_draws=m,
                                                      **{"prior_scale": 1.0, **ENSEMBLE, name: v}),
         *ENS_FO_CASES[name])


def test_ens_gambitts_custom_optimizer_keeps_its_own_rate():
    import optax

    policy = ens_fo_gambitts(K, C, FEATURES, optimizer=optax.sgd(0.1), **ENSEMBLE)
    assert policy.params.learning_rate is None and policy.params.prior_var is None


OPTIONAL_CASES = {
    "gate:prior_mean": (77.0, 60.0),
    "gate:prior_beta": (10.0, 2.0),
    "po:reward_noise_scale": (1.0, 2.5),
    "po:treatment_draws": PO_CASES["treatment_draws"],
    "fo:niw_kappa": (1.0, 3.0),
    "fo:reward_prior_mean": ((77.0, 0.0), (70.0, 0.5)),
}


@pytest.mark.parametrize("case", sorted(OPTIONAL_CASES))
def test_optional_prompting_inner_hyperparameters_are_data(case):
    part, name = case.split(":")

    def build(v, m):
        gate = standard_ts(2, num_cells=C, propensity_draws=m, **({name: v} if part == "gate" else {}))
        mine = {name: v} if part in ("po", "fo") and name != "treatment_draws" else {}
        if part == "fo":
            prompter = fo_gambitts(K, C, FEATURES, propensity_draws=m, **mine)
        else:
            prompter = po_gambitts(v if name == "treatment_draws" else DRAWS, FEATURES, propensity_draws=m, **mine)
        return optional_prompting(gate, prompter)

    _run("optional", case, build, *OPTIONAL_CASES[case])
