"""Config fuzzing: arbitrary TOML documents and --set overrides give a ValidationError or a valid,
buildable experiment, never a traceback from inside the package."""

from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from structbandits import ValidationError
from structbandits.experiments import apply_overrides, build_components, load_config, resolve_config
from structbandits.experiments.registry import AGENTS, ENVIRONMENTS

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                      HealthCheck.function_scoped_fixture])

# MovieLens builds take seconds each (ALS on the ratings): fuzzed elsewhere by its own tests.
ENV_KINDS = sorted(set(ENVIRONMENTS) - {"movielens"})
KNOWN_KEYS = sorted({"horizon", "seeds", "seed", "seed_batch", "name", "description", "kind", "envs", "agents",
                     "num_actions", "num_features", "noise_scale", "sigma0", "prior_mean", "factored",
                     "propensity_draws", "num_effects", "rewards", "delta", "context_pool", "mixing_low"})

keys = st.one_of(st.sampled_from(KNOWN_KEYS), st.text(min_size=1, max_size=8))
scalars = st.one_of(
    st.integers(-3, 12),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=6),
    st.sampled_from([*ENV_KINDS, *AGENTS, "linear", "logistic"]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
                      max_leaves=6)
component = st.dictionaries(st.sampled_from(["kind", "num_actions", "num_features", "noise_scale", "sigma0",
                                             "propensity_draws", "factored", "rewards", "num_effects", "context_pool"]),
                            st.one_of(scalars, values), max_size=4)
environment = st.fixed_dictionaries({"kind": st.sampled_from(ENV_KINDS)}) | component
agent = st.fixed_dictionaries({"kind": st.sampled_from(sorted(AGENTS))}) | component
documents = st.fixed_dictionaries(
    {},
    optional={
        "horizon": st.one_of(st.integers(-2, 4), scalars),
        "seeds": st.one_of(st.integers(-1, 2), scalars),
        "seed": scalars,
        "seed_batch": scalars,
        "name": scalars,
        "envs": st.one_of(st.dictionaries(st.sampled_from([*ENV_KINDS, "e"]), environment, max_size=2), values),
        "agents": st.one_of(st.dictionaries(st.sampled_from([*AGENTS, "a"]), agent, max_size=2), values),
    },
) | st.dictionaries(keys, values, max_size=4)


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string is a JSON string
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def to_toml(document: dict) -> str:
    return "\n".join(f"{json.dumps(key)} = {toml_value(value)}" for key, value in document.items()) + "\n"


def check(raw) -> None:
    """A ValidationError, or a config that resolves and builds."""
    try:
        config = resolve_config(raw)
    except ValidationError:
        return
    assert config.horizon >= 1 and config.seeds >= 1
    try:
        envs, agents = build_components(config)
    except ValidationError:
        return
    for factory in agents.values():
        for env in envs.values():
            assert factory(env) is not None


RUN = {"horizon": 5, "seeds": 1}


@FUZZ
@given(documents)
# gaps the fuzzing found (each once a TypeError, a JAX error or an aborted process):
@example({**RUN, "envs": {"linear": {"kind": [1]}}, "agents": {"random": {}}})
@example({**RUN, "envs": {"linear": {}}, "agents": {"random": {"kind": {"a": 1}}}})
@example({**RUN, "envs": {"linear": {"num_actions": 2**62}}, "agents": {"random": {}}})
@example({**RUN, "envs": {"mixed_effect": {"num_features": 10**5}}, "agents": {"random": {}}})
@example({**RUN, "seed": 2**63, "envs": {"linear": {}}, "agents": {"random": {}}})
@example({"horizon": 10**9, "seeds": 10**9, "envs": {"linear": {}}, "agents": {"random": {}}})
@example({**RUN, "envs": {"": {"kind": "linear"}}, "agents": {"random": {}}})
def test_fuzzed_toml_documents_validate_or_build(tmp_path_factory, document):
    path = tmp_path_factory.mktemp("fuzz") / "config.toml"
    text = to_toml(document)
    path.write_text(text)
    try:
        raw = load_config(path)
    except ValidationError:
        return
    check(raw)


@FUZZ
@given(st.text(max_size=60))
def test_arbitrary_text_is_valid_toml_or_a_validation_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("text") / "config.toml"
    path.write_text(text, encoding="utf-8")
    try:
        check(load_config(path))
    except ValidationError:
        pass


@FUZZ
@given(st.lists(st.one_of(st.text(max_size=20), st.builds("{}={}".format, st.sampled_from(
    ["horizon", "seeds", "seed", "agents.lints.sigma0", "envs.linear", "envs.linear.kind", "agents", "x.y.z"]),
    st.one_of(st.integers(-2, 5).map(str), st.text(max_size=8), st.sampled_from(["[1,", "{a=1}", "nan", "1e999"])))),
    max_size=3))
def test_fuzzed_overrides_of_the_demo_validate_or_build(overrides):
    try:
        raw = apply_overrides(load_config("demo"), overrides)
    except ValidationError:
        return
    check(raw)
