import pytest

from structbandits.errors import ValidationError
from structbandits.experiments import apply_overrides, build_components, builtin_configs, load_config, resolve_config

MINIMAL = {"horizon": 10, "seeds": 2, "envs": {"linear": {}}, "agents": {"lints": {}, "random": {}}}


def test_builtin_configs_resolve_and_build():
    assert {"demo", "linear-k100"} <= set(builtin_configs())
    for name in builtin_configs():
        config = resolve_config(load_config(name))
        envs, agents = build_components(config)
        assert envs and agents


def test_defaults_are_filled_in_and_round_trip():
    config = resolve_config(MINIMAL)
    assert config.seed == 0 and config.seed_batch == 2 and config.name == "experiment"
    assert config.envs["linear"].params == {"num_actions": 10, "num_features": 5, "prior_scale": 1.0, "noise_scale": 1.0}
    assert config.agents["lints"].kind == "lints" and config.agents["lints"].params["sigma0"] == 1.0
    assert resolve_config(config.to_dict()) == config


def test_overrides_parse_toml_values_and_nest():
    raw = apply_overrides(load_config("demo"), ["horizon=200", "seeds=5", "agents.lints.sigma0=2",
                                                  "name=my run", "agents.greedy.kind=lints"])
    config = resolve_config(raw)
    assert config.horizon == 200 and config.seeds == 5 and config.name == "my run"
    assert config.agents["lints"].params["sigma0"] == 2.0  # an int literal becomes the declared float
    assert config.agents["greedy"].kind == "lints"
    assert load_config("demo")["horizon"] == 500  # overrides do not mutate the loaded config


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["horizon=-1"], "horizon: expected an integer >= 1, got -1"),
        (["horizon=abc"], "horizon: expected an integer, got 'abc'"),
        (["seeds=2.5"], "seeds: expected an integer, got 2.5"),
        (["agents.lints.sigma0=0"], "agents.lints.sigma0: expected values > 0, got 0.0"),
        (["agents.lints.sigma"], r"--set: expected KEY=VALUE"),
        (["agents.lints.sigam0=1"], "agents.lints.sigam0: unknown key for kind 'lints'; expected one of: "
                                    "noise_scale, prior_mean, propensity_draws, sigma0"),
        (["agents.lints.kind=lnts"], "agents.lints.kind: expected one of lints, random, got 'lnts'"),
        (["envs.linear.noise_scale=-1"], "envs.linear.noise_scale: expected values >= 0"),
        (["envs.linear.num_actions=1"], "envs.linear.num_actions: expected an integer >= 2, got 1"),
        (["envs.linear.num_actions=true"], "envs.linear.num_actions: expected an integer, got True"),
        (["horizn=3"], "horizn: unknown top-level key"),
        (["horizon.x=3"], "--set horizon.x: horizon is a value, not a table"),
        (["agents.lints.noise_scale=\"big\""], "agents.lints.noise_scale: expected a number, got 'big'"),
    ],
)
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(ValidationError, match=message):
        build_components(resolve_config(apply_overrides(load_config("demo"), overrides)))


def test_structural_errors():
    with pytest.raises(ValidationError, match="horizon: required"):
        resolve_config({"seeds": 1, "envs": {"linear": {}}, "agents": {"random": {}}})
    with pytest.raises(ValidationError, match=r"agents: expected at least one \[agents.NAME\] table"):
        resolve_config({**MINIMAL, "agents": {}})
    with pytest.raises(ValidationError, match="envs.linear: expected a table of settings, got 3"):
        resolve_config({**MINIMAL, "envs": {"linear": 3}})
    with pytest.raises(ValidationError, match="config: expected a TOML file or a built-in name"):
        load_config("no-such-config")


def test_invalid_toml_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("horizon = \n")
    with pytest.raises(ValidationError, match="config: .*bad.toml is not valid TOML"):
        load_config(path)
