"""A study file (``STUDY.toml``): what a live study runs, parsed and validated, and the policy it declares.

    name = "mood-mrt"              # the study's name in the store
    store = "study.db"             # an SQLite file (relative to this file) or an SQLAlchemy URL
    key = 7                        # the root seed of all of the study's randomness
    context_shape = [2]            # (d,) shared by the arms, or (K, d) one row per arm
    update_every = 1               # apply outcomes in blocks of N ... or
    # update_interval_s = 86400    # ... record outcomes at once, update the model every S seconds
    token_env = "MOOD_MRT_TOKEN"   # the environment variable holding the service's bearer token

    [policy]
    kind = "lints"                 # "lints", "lints-nig" or "standard-ts"
    num_actions = 2
    num_features = 2
    sigma0 = 1.0
    noise_scale = 0.5

    [clipping]                     # optional: randomisation probabilities clipped to [p_min, p_max]
    p_min = 0.1
    p_max = 0.9

Every key is checked (type, range, and whether the kind takes it); an error is a ``ValidationError``
naming the full key (``policy.sigma0``), as for experiment configs (``experiments.config``). The token
itself never goes in the file: ``token = ...`` is refused. ``build_policy`` turns the parsed file into
the ``Policy`` (``agents``), ``open_agent`` into the ``OnlineAgent`` on its store; the settings of the
``[policy]`` and ``[clipping]`` tables are recorded as the study's hyperparameters, so reopening the
study with other settings is refused. Kinds and their keys (defaults as the agents'):

``lints``        ``agents.lin_ts``: prior N(prior_mean·1, sigma0² I) per arm, known noise sd noise_scale;
                 propensity_draws (an integer, or "exact" for two arms).
``lints-nig``    ``agents.lin_ts_nig``: unknown noise, σ² ~ InvGamma(noise_alpha, noise_beta) per arm
                 (one for all arms with ``shared``), θ_a | σ² ~ N(prior_mean·1, σ² sigma0² I).
``standard-ts``  ``agents.standard_ts``: non-contextual NIG Thompson sampling (the context is logged,
                 not used).

``[clipping]`` (``agents.clipped``): p_min, p_max, probability_draws (Monte-Carlo draws of the action
distribution, default 1000) and probabilities ("exact": the closed form, LinTS with two arms only — the
default there; "monte-carlo" otherwise). The inner policy then reports no propensities of its own
(``propensity_draws`` must stay 0).
"""

from __future__ import annotations

import inspect
import math
import re
import tomllib
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from structbandits.agents import clipped, lin_ts, lin_ts_nig, lin_ts_two_arm_probabilities, standard_ts
from structbandits.agents.protocol import Policy
from structbandits.errors import ValidationError, check_integer, check_positive

__all__ = ["POLICY_KINDS", "ClippingSpec", "StudyFile", "build_policy", "load_study_file", "open_agent",
           "parse_study_file"]

_TOP_KEYS = {"name": str, "description": str, "store": str, "key": int, "context_shape": None, "update_every": int,
             "update_interval_s": float, "snapshot_every": int, "token_env": str}
_REQUIRED = ("name", "store", "key", "context_shape", "policy")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# ---------------------------------------------------------------------- the kinds: keyword defaults are the file's
def _lints(num_actions: int, num_features: int, sigma0: float = 1.0, prior_mean: float = 0.0,
           noise_scale: float = 1.0, propensity_draws: int | str = 0) -> Policy:
    check_positive("sigma0", sigma0)
    return lin_ts(np.full(num_features, prior_mean), sigma0**2 * np.eye(num_features), noise_scale,
                  num_actions=num_actions, propensity_draws=propensity_draws)


def _lints_nig(num_actions: int, num_features: int, sigma0: float = 1.0, prior_mean: float = 0.0,
               noise_alpha: float = 2.0, noise_beta: float = 1.0, shared: bool = False,
               propensity_draws: int = 0) -> Policy:
    check_positive("sigma0", sigma0)
    return lin_ts_nig(np.full(num_features, prior_mean), sigma0**2 * np.eye(num_features), noise_alpha, noise_beta,
                      num_actions=num_actions, shared=shared, propensity_draws=propensity_draws)


def _standard_ts(num_actions: int, prior_mean: float = 77.0, prior_kappa: float = 5.0, prior_alpha: float = 1.0,
                 prior_beta: float = 10.0, propensity_draws: int = 100) -> Policy:
    return standard_ts(num_actions, prior_mean=prior_mean, prior_kappa=prior_kappa, prior_alpha=prior_alpha,
                       prior_beta=prior_beta, propensity_draws=propensity_draws)


POLICY_KINDS: dict[str, Callable[..., Policy]] = {"lints": _lints, "lints-nig": _lints_nig, "standard-ts": _standard_ts}
_CONTEXTUAL = {"lints", "lints-nig"}


@dataclass(frozen=True)
class ClippingSpec:
    """The ``[clipping]`` table: bounds, Monte-Carlo draws, and "exact" or "monte-carlo" probabilities."""

    p_min: float
    p_max: float
    probability_draws: int
    probabilities: str


@dataclass(frozen=True)
class StudyFile:
    """A parsed, validated study file (defaults filled in).

    Attributes
    ----------
    name, description : the study's name in the store and a free text.
    store : an absolute SQLite file path or an SQLAlchemy URL.
    key : the root seed (>= 0).
    context_shape : (d,) or (K, d) for the LinTS kinds; any shape for standard-ts (logged only).
    kind, policy : the policy kind and its settings (every key of the kind, defaults filled in).
    clipping : the ``[clipping]`` table, or None.
    update_every, update_interval_s : the update schedule (blocks of N outcomes, or every S seconds; S None).
    snapshot_every : store the posterior every this many outcomes (0: never).
    token_env : the environment variable holding the bearer token, or None.
    path : the file it was read from (None for a parsed dict).
    """

    name: str
    description: str
    store: str
    key: int
    context_shape: tuple[int, ...]
    kind: str
    policy: dict[str, Any]
    clipping: ClippingSpec | None
    update_every: int
    update_interval_s: float | None
    snapshot_every: int
    token_env: str | None
    path: Path | None = None

    @property
    def num_actions(self) -> int:
        return int(self.policy["num_actions"])

    def hyperparameters(self) -> dict[str, Any]:
        """What the study records and checks on reopening: the policy's settings (with ``num_actions``,
        which analyses read) and the clipping bounds, JSON-able."""
        settings = {"kind": self.kind, **self.policy}
        if self.clipping is not None:
            settings["clipping"] = {"p_min": self.clipping.p_min, "p_max": self.clipping.p_max,
                                    "probability_draws": self.clipping.probability_draws,
                                    "probabilities": self.clipping.probabilities}
        return settings

    def example_context(self) -> np.ndarray:
        """A context of the declared shape (zeros, float64): fixes the study's context structure."""
        return np.zeros(self.context_shape, dtype=np.float64)


# ---------------------------------------------------------------------- parsing
def _coerce(key: str, value: Any, annotation: Any) -> Any:
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is int and isinstance(value, float) and value.is_integer():
        return int(value)
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    if annotation in names and type(value) is not annotation:
        raise ValidationError(f"{key}: expected {names[annotation]}, got {value!r}")
    return value


def _unknown(prefix: str, table: Mapping[str, Any], allowed: set[str], what: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ValidationError(f"{prefix}{unknown[0]}: unknown key {what}; expected one of: {', '.join(sorted(allowed))}")


def _policy_table(table: Any) -> tuple[str, dict[str, Any]]:
    if not isinstance(table, Mapping):
        raise ValidationError(f"policy: expected a [policy] table, got {table!r}")
    kind = table.get("kind")
    if not isinstance(kind, str) or kind not in POLICY_KINDS:
        raise ValidationError(f"policy.kind: expected one of {', '.join(sorted(POLICY_KINDS))}, got {kind!r}")
    builder = POLICY_KINDS[kind]
    hints = typing.get_type_hints(builder)
    parameters = inspect.signature(builder).parameters
    _unknown("policy.", table, set(parameters) | {"kind"}, f"for kind {kind!r}")
    settings = {}
    for name, parameter in parameters.items():
        if name not in table and parameter.default is inspect.Parameter.empty:
            raise ValidationError(f"policy.{name}: required for kind {kind!r}, missing from the study file")
        value = table.get(name, parameter.default)
        if name == "propensity_draws" and isinstance(value, str):
            takes_exact = hints[name] == (int | str)
            if not takes_exact or value != "exact":
                expected = 'an integer >= 0 or "exact"' if takes_exact else "an integer >= 0"
                raise ValidationError(f"policy.propensity_draws: expected {expected}, got {value!r}")
        else:
            value = _coerce(f"policy.{name}", value, int if name == "propensity_draws" else hints[name])
        if isinstance(value, float) and not math.isfinite(value):
            raise ValidationError(f"policy.{name}: expected a finite number, got {value!r}")
        settings[name] = value
    settings["num_actions"] = check_integer("policy.num_actions", settings["num_actions"], minimum=2)
    if "num_features" in settings:
        settings["num_features"] = check_integer("policy.num_features", settings["num_features"], minimum=1)
    if isinstance(settings["propensity_draws"], int):
        check_integer("policy.propensity_draws", settings["propensity_draws"], minimum=0)
    return kind, settings


def _clipping_table(table: Any, kind: str, policy: dict[str, Any], given: Mapping[str, Any]) -> ClippingSpec:
    if not isinstance(table, Mapping):
        raise ValidationError(f"clipping: expected a [clipping] table, got {table!r}")
    _unknown("clipping.", table, {"p_min", "p_max", "probability_draws", "probabilities"}, "")
    exact_available = kind == "lints" and policy["num_actions"] == 2
    values = {key: _coerce(f"clipping.{key}", table[key], float) for key in ("p_min", "p_max") if key in table}
    for key, value in values.items():
        if not 0.0 <= value <= 1.0:
            raise ValidationError(f"clipping.{key}: expected a probability in [0, 1], got {value!r}")
    p_min, p_max = values.get("p_min", 0.0), values.get("p_max", 1.0)
    uniform = 1.0 / policy["num_actions"]
    if not p_min <= uniform <= p_max:
        raise ValidationError(f"clipping.p_min, clipping.p_max: expected p_min <= 1/K <= p_max for K = "
                              f"{policy['num_actions']} actions (1/K = {uniform:.6g}), got {p_min} and {p_max}")
    draws = check_integer("clipping.probability_draws", table.get("probability_draws", 1000), minimum=1)
    probabilities = table.get("probabilities", "exact" if exact_available else "monte-carlo")
    if probabilities not in ("exact", "monte-carlo") or (probabilities == "exact" and not exact_available):
        expected = '"exact" or "monte-carlo"' if exact_available else '"monte-carlo"'
        raise ValidationError(f"clipping.probabilities: expected {expected} (the closed form exists for kind 'lints' "
                              f"with two actions), got {probabilities!r}")
    if given.get("propensity_draws", 0) != 0:
        raise ValidationError(f"policy.propensity_draws: with [clipping] the action distribution is computed by the "
                              f"clipping (see clipping.probabilities); leave it at 0, got {given['propensity_draws']!r}")
    policy["propensity_draws"] = 0  # the inner policy's own propensities would cost M times over, for nothing
    return ClippingSpec(p_min, p_max, draws, probabilities)


def _context_shape(value: Any, kind: str, policy: dict[str, Any]) -> tuple[int, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= 2:
        raise ValidationError(f"context_shape: expected [d] or [K, d], got {value!r}")
    shape = tuple(check_integer(f"context_shape[{i}]", n, minimum=1) for i, n in enumerate(value))
    if kind in _CONTEXTUAL:
        d, k = policy["num_features"], policy["num_actions"]
        if shape[-1] != d or (len(shape) == 2 and shape[0] != k):
            raise ValidationError(f"context_shape: expected [{d}] (shared by the arms) or [{k}, {d}] (one row per "
                                  f"arm) for policy.num_actions = {k} and policy.num_features = {d}, got {list(shape)}")
    return shape


def parse_study_file(raw: Mapping[str, Any], *, base: str | Path | None = None) -> StudyFile:
    """Validate a study file's contents (a dict, as ``tomllib`` reads it) and fill in defaults.

    Parameters
    ----------
    raw : the file's tables and keys.
    base : the folder a relative SQLite ``store`` path is relative to (default: the working directory).

    Returns
    -------
    StudyFile. Raises ``ValidationError`` naming the key for an unknown, missing or invalid key.
    """
    if not isinstance(raw, Mapping):
        raise ValidationError(f"study file: expected a table of keys, got {type(raw).__name__}")
    if "token" in raw:
        raise ValidationError("token: never put the token in the study file; set token_env = \"NAME\" and export NAME "
                              "(or pass --token-env NAME)")
    _unknown("", raw, set(_TOP_KEYS) | {"policy", "clipping"}, "at the top level")
    for key in _REQUIRED:
        if key not in raw:
            raise ValidationError(f"{key}: required, missing from the study file")
    top = {key: _coerce(key, raw[key], kind) for key, kind in _TOP_KEYS.items() if key in raw}
    name = top["name"]
    if not name or len(name) > 200:
        raise ValidationError(f"name: expected a non-empty study name of at most 200 characters, got {name!r}")
    store = top["store"]
    if not store:
        raise ValidationError("store: expected an SQLite file path or an SQLAlchemy URL, got an empty string")
    if "://" not in store:
        store = str((Path(base or ".") / Path(store).expanduser()).resolve())
    key = check_integer("key", top["key"], minimum=0, maximum=2**63 - 1)  # a jax.random.PRNGKey seed
    kind, policy = _policy_table(raw["policy"])
    clipping = _clipping_table(raw["clipping"], kind, policy, raw["policy"]) if "clipping" in raw else None
    if "update_every" in top and "update_interval_s" in top:
        raise ValidationError("update_every, update_interval_s: expected one update schedule (every N outcomes, or "
                              "every S seconds), got both")
    update_every = check_integer("update_every", top.get("update_every", 1), minimum=1)
    interval = top.get("update_interval_s")
    if interval is not None:
        interval = float(check_positive("update_interval_s", interval))
    token_env = top.get("token_env")
    if token_env is not None and not _ENV_NAME.match(token_env):
        raise ValidationError(f"token_env: expected the name of an environment variable (letters, digits, _), "
                              f"got {token_env!r}")
    return StudyFile(name=name, description=top.get("description", ""), store=store, key=key,
                     context_shape=_context_shape(top["context_shape"], kind, policy), kind=kind, policy=policy,
                     clipping=clipping, update_every=update_every, update_interval_s=interval,
                     snapshot_every=check_integer("snapshot_every", top.get("snapshot_every", 0), minimum=0),
                     token_env=token_env)


def load_study_file(path: str | Path) -> StudyFile:
    """Read and validate a ``STUDY.toml`` (a relative SQLite store is relative to the file's folder)."""
    path = Path(path)
    if not path.is_file():
        raise ValidationError(f"study file: expected a TOML file, got {str(path)!r} "
                              f"({'a folder' if path.is_dir() else 'no such file'})")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise ValidationError(f"study file: expected a readable UTF-8 text file, got {str(path)!r} ({err})") from None
    except tomllib.TOMLDecodeError as err:
        raise ValidationError(f"study file: {path} is not valid TOML: {err}") from None
    return replace(parse_study_file(raw, base=path.resolve().parent), path=path.resolve())


# ---------------------------------------------------------------------- building
def build_policy(study: StudyFile) -> Policy:
    """The study's ``Policy``: the kind's agent with the file's settings, wrapped in ``agents.clipped`` when
    the file has a ``[clipping]`` table. A setting the agent refuses is a ``ValidationError`` naming
    ``policy.KEY`` (or ``clipping.KEY``)."""
    try:
        policy = POLICY_KINDS[study.kind](**study.policy)
    except ValidationError as err:
        raise ValidationError(f"policy.{err}") from None
    if study.clipping is None:
        return policy
    exact = lin_ts_two_arm_probabilities if study.clipping.probabilities == "exact" else None
    try:
        return clipped(policy, num_actions=study.num_actions, p_min=study.clipping.p_min, p_max=study.clipping.p_max,
                       probability_draws=study.clipping.probability_draws, probabilities=exact)
    except ValidationError as err:
        raise ValidationError(f"clipping.{err}") from None


def open_agent(study: StudyFile, *, policy: Policy | None = None, worker: str | None = None) -> Any:
    """The study's ``OnlineAgent`` on its store (created there with the file's key and hyperparameters, or
    reopened and checked against them); ``policy`` defaults to ``build_policy(study)``."""
    from structbandits.study.online import OnlineAgent

    return OnlineAgent(build_policy(study) if policy is None else policy, key=study.key, store=study.store,
                       name=study.kind, study=study.name, hyperparameters=study.hyperparameters(),
                       example_context=study.example_context(), update_every=study.update_every,
                       update_interval_s=study.update_interval_s, snapshot_every=study.snapshot_every, worker=worker)
