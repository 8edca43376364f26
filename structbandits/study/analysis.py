"""Off-policy evaluation of a logged study: what would another policy have achieved?

    result = off_policy_value(study, "uniform")          # study: a LoggedStudy (study.logged)
    result.table        # estimator, estimate, se, ci_low, ci_high, interval — one row per estimator
    result.overlap      # OverlapDiagnostics: effective sample size, max weight, tiny propensities, ...

With logged contexts x_i, actions a_i, rewards r_i and propensities p_i = π₀(a_i | x_i), a target
policy π (action probabilities at each logged context) and importance weights w_i = π(a_i | x_i) / p_i:

``ipw``    V̂ = mean(w_i r_i)                                 (unbiased when π₀ > 0 wherever π > 0)
``snipw``  V̂ = Σ w_i r_i / Σ w_i                             (self-normalised: bounded by the rewards)
``dm``     V̂ = mean(Σ_a π(a | x_i) q̂(x_i, a))                (direct method: only as good as q̂)
``dr``     V̂ = DM + mean(w_i (r_i − q̂(x_i, a_i)))            (doubly robust: right if q̂ or p is)

q̂ is cross-fitted (``cross_fit_outcomes``): the decisions are split into ``folds`` parts, and each
part's q̂(x, a) comes from a regressor per arm fitted on the other parts only, so no decision's own
reward enters its prediction (the DR interval then needs no Donsker condition on the regressor).

Intervals: by default normal intervals estimate ± z·se from each estimator's influence function —
the sample sd of its per-decision terms / √n for IPW, DM and DR; for SNIPW the linearised (delta-method)
terms w_i (r_i − V̂) / mean(w). DM's se treats q̂ as fixed and ignores its estimation error, so DM's
interval is too narrow and need not cover (use DR for inference). With ``bootstrap=B`` the intervals are
percentile intervals over B resamples of the decisions; the estimators are recomputed from the resampled
per-decision terms (SNIPW's ratio included) with q̂ held fixed, not refitted per resample.

Overlap: IPW is only as good as the logger's exploration. ``OverlapDiagnostics`` reports the
effective sample size of the weights, the largest weight, the share of logged propensities below
``tiny``, the mean weight (1 in expectation when π₀ covers π: far below 1 means the target puts mass on
actions the logger (almost) never takes) and, where the logger recorded every action's probability,
the target's mass on actions the logger gave probability below ``tiny``. An ``OverlapWarning`` says when
IPW is not to be trusted.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from structbandits.errors import ValidationError, check_integer, check_shape, check_simplex
from structbandits.study.logged import LoggedStudy

__all__ = ["ESTIMATORS", "OffPolicyValue", "OverlapDiagnostics", "OverlapWarning", "cross_fit_outcomes",
           "off_policy_value", "overlap_diagnostics", "parse_target", "target_probabilities"]

ESTIMATORS = ("ipw", "snipw", "dm", "dr")
ESS_FRACTION_WARNING = 0.1      # warn when the effective sample size is below this share of n
TARGET_MASS_WARNING = 0.01      # warn when this much of the target's mass sits on actions the logger ~never takes
MEAN_WEIGHT_WARNING = (0.05, 4.0)  # warn when |mean weight - 1| exceeds both this and this many standard errors


class OverlapWarning(UserWarning):
    """The logger explored too little for importance weighting: IPW is not to be trusted here."""


@dataclass(frozen=True)
class OverlapDiagnostics:
    """How well the logging policy covers the target policy (weights w_i = π(a_i | x_i) / p_i).

    Attributes
    ----------
    num_decisions : n.
    effective_sample_size : (Σ w)² / Σ w² (n for equal weights; 0 when every weight is 0).
    ess_fraction : effective_sample_size / n.
    max_weight : the largest weight.
    mean_weight, mean_weight_se : mean(w) and its standard error (sd / √n); E[w] = 1 under overlap.
    share_tiny_propensities : share of logged propensities below ``tiny``.
    target_mass_on_tiny : mean over decisions of the target's probability on actions the logger gave
        probability below ``tiny``; NaN when the logger recorded only the taken action's probability.
    tiny : the threshold.
    """

    num_decisions: int
    effective_sample_size: float
    ess_fraction: float
    max_weight: float
    mean_weight: float
    mean_weight_se: float
    share_tiny_propensities: float
    target_mass_on_tiny: float
    tiny: float

    def problems(self) -> list[str]:
        """Why IPW is not to be trusted here (empty when nothing is wrong)."""
        found = []
        if self.ess_fraction < ESS_FRACTION_WARNING:
            found.append(f"the effective sample size of the importance weights is {self.effective_sample_size:.1f} of "
                         f"{self.num_decisions} decisions ({100 * self.ess_fraction:.1f}% < {100 * ESS_FRACTION_WARNING:.0f}%)")
        if self.share_tiny_propensities > 0:
            found.append(f"{100 * self.share_tiny_propensities:.2f}% of the logged propensities are below {self.tiny:g}")
        if self.target_mass_on_tiny > TARGET_MASS_WARNING:
            found.append(f"the target puts {100 * self.target_mass_on_tiny:.1f}% of its mass on actions the logger gave "
                         f"probability below {self.tiny:g}")
        deviation = abs(self.mean_weight - 1.0)
        if deviation > MEAN_WEIGHT_WARNING[0] and deviation > MEAN_WEIGHT_WARNING[1] * self.mean_weight_se:
            found.append(f"the mean importance weight is {self.mean_weight:.3f} (se {self.mean_weight_se:.3f}), not 1: "
                         "the target takes actions the logger (almost) never took")
        return found

    def to_frame(self) -> pd.DataFrame:
        """One row per diagnostic: name, value."""
        return pd.DataFrame({"diagnostic": list(self.__dataclass_fields__),
                             "value": [float(getattr(self, name)) for name in self.__dataclass_fields__]})


@dataclass(frozen=True)
class OffPolicyValue:
    """The result of ``off_policy_value``.

    Attributes
    ----------
    table : one row per estimator: estimator, estimate, se, ci_low, ci_high, interval
        ("normal": influence-function interval; "bootstrap": percentile interval), level.
    overlap : OverlapDiagnostics.
    target : (n, K) the target's action probabilities at the logged contexts.
    outcome_predictions : (n, K) the cross-fitted q̂(x_i, a) (None when neither DM nor DR was asked for).
    fold : (n,) the fold each decision's q̂ was predicted in (None likewise).
    """

    table: pd.DataFrame
    overlap: OverlapDiagnostics
    target: np.ndarray
    outcome_predictions: np.ndarray | None
    fold: np.ndarray | None


def target_probabilities(study: LoggedStudy, target: Any) -> np.ndarray:
    """The target policy's (n, K) action probabilities at the logged contexts.

    ``target`` is ``"uniform"``, an (n, K) array, or a callable features (n, p) -> (n, K). Rows must be
    probabilities summing to 1 (tolerance 1e-6).
    """
    n, k = study.num_decisions, study.num_actions
    if isinstance(target, str):
        if target != "uniform":
            raise ValidationError(f"target: expected 'uniform', an (n, K) array or a callable, got {target!r}")
        return np.full((n, k), 1.0 / k)
    name = "target"
    if callable(target):
        name = "target(features)"
        try:
            target = target(study.features.copy())
        except Exception as err:  # a user's function: say which argument failed, not a traceback from inside it
            raise ValidationError(f"target: calling it on the features ({n}, {study.features.shape[1]}) raised "
                                  f"{type(err).__name__}: {err}") from None
    try:
        probabilities = np.asarray(target, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValidationError(f"{name}: expected an ({n}, {k}) array of action probabilities, got {type(target).__name__}") from None
    check_shape(name, probabilities, (n, k))
    return check_simplex(name, probabilities)


def parse_target(text: str, num_actions: int, *, name: str = "target") -> Any:
    """A target policy from its command-line spelling.

    ``uniform``; ``arm:J`` (always arm J, 0 <= J < num_actions); or ``module:function``, a function
    importable as ``module.function`` taking the features (n, p) and returning the action
    probabilities (n, K). ``name`` is the argument named in errors (``--target`` on the command line).
    """
    import importlib

    if not isinstance(text, str) or not text.strip():
        raise ValidationError(f"{name}: expected uniform, arm:J or module:function, got {text!r}")
    text = text.strip()
    if text == "uniform":
        return "uniform"
    module, colon, attribute = text.partition(":")
    if not colon or not module or not attribute:
        raise ValidationError(f"{name}: expected uniform, arm:J or module:function, got {text!r}")
    if module == "arm":
        try:
            arm = int(attribute)
        except ValueError:
            raise ValidationError(f"{name}: expected arm:J with an integer J, got {text!r}") from None
        if not 0 <= arm < num_actions:
            raise ValidationError(f"{name}: expected an arm in 0..{num_actions - 1}, got {text!r}")
        return lambda features: np.eye(num_actions)[np.full(len(features), arm)]
    try:
        function = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as err:
        raise ValidationError(f"{name}: could not import {attribute!r} from module {module!r} ({err})") from None
    if not callable(function):
        raise ValidationError(f"{name}: expected {text!r} to be a function features (n, p) -> (n, K), got "
                              f"{type(function).__name__}")
    return function


def overlap_diagnostics(study: LoggedStudy, target: np.ndarray, *, tiny: float = 1e-3) -> OverlapDiagnostics:
    """``OverlapDiagnostics`` of the target's (n, K) probabilities ``target`` against the logger of ``study``."""
    n = study.num_decisions
    weights = target[np.arange(n), study.actions] / study.propensities
    total, squares = weights.sum(), np.square(weights).sum()
    ess = float(total**2 / squares) if squares > 0 else 0.0
    mass = np.nan
    if study.action_probabilities is not None:
        mass = float(np.mean(np.sum(target * (study.action_probabilities < tiny), axis=1)))
    return OverlapDiagnostics(
        num_decisions=n, effective_sample_size=ess, ess_fraction=ess / n, max_weight=float(weights.max()),
        mean_weight=float(weights.mean()), mean_weight_se=float(weights.std(ddof=1) / np.sqrt(n)),
        share_tiny_propensities=float(np.mean(study.propensities < tiny)), target_mass_on_tiny=mass, tiny=float(tiny))


def cross_fit_outcomes(study: LoggedStudy, *, outcome_model: Any = None, folds: int = 2,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Cross-fitted outcome predictions q̂(x_i, a) for every decision and arm.

    Parameters
    ----------
    study : the logged study.
    outcome_model : a scikit-learn regressor (``fit`` / ``predict``), ``clone``-d for every fold and
        arm and fitted on that arm's decisions outside the fold (features -> reward); default
        ``Ridge(alpha=1.0)``.
    folds : the number of parts (``KFold(folds, shuffle=True, random_state=seed)``), 2 <= folds <= n.
    seed : the split's seed.

    Returns
    -------
    (q_hat (n, K), fold (n,)). An arm with no decision in a fold's training parts is predicted, in
    that fold, by the mean reward of all the training parts' decisions.
    """
    from sklearn.base import clone
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import KFold

    n, k = study.num_decisions, study.num_actions
    folds = check_integer("folds", folds, minimum=2, maximum=n)
    seed = check_integer("seed", seed, minimum=0, maximum=2**32 - 1)
    model = Ridge(alpha=1.0) if outcome_model is None else outcome_model
    if not (callable(getattr(model, "fit", None)) and callable(getattr(model, "predict", None))):
        raise ValidationError(f"outcome_model: expected a scikit-learn regressor (fit, predict), got {type(model).__name__}")
    q_hat, fold = np.empty((n, k)), np.empty(n, dtype=np.int64)
    x, actions, rewards = study.features, study.actions, study.rewards
    for index, (train, test) in enumerate(KFold(folds, shuffle=True, random_state=seed).split(x)):
        fold[test] = index
        for arm in range(k):
            rows = train[actions[train] == arm]
            if rows.size == 0:
                q_hat[test, arm] = rewards[train].mean()
                continue
            fitted = clone(model).fit(x[rows], rewards[rows])
            q_hat[test, arm] = np.asarray(fitted.predict(x[test]), dtype=np.float64).reshape(-1)
    return q_hat, fold


def _bootstrap_interval(values: dict[str, tuple[np.ndarray, np.ndarray | None]], n: int, draws: int, level: float,
                        rng: np.random.Generator) -> dict[str, tuple[float, float]]:
    """Percentile intervals of each estimator over ``draws`` resamples of the n decisions.

    ``values[name]`` = (numerator terms, denominator terms or None): the estimate is
    mean(numerator) / mean(denominator) (a plain mean without a denominator).
    """
    chunk = max(1, 4_000_000 // n)  # resample indices (chunk, n) at a time: bounded memory
    replicates = {name: [] for name in values}
    for start in range(0, draws, chunk):
        index = rng.integers(0, n, size=(min(chunk, draws - start), n))
        for name, (numerator, denominator) in values.items():
            top = numerator[index].mean(axis=1)
            if denominator is not None:
                bottom = denominator[index].mean(axis=1)
                with np.errstate(invalid="ignore", divide="ignore"):
                    top = np.where(bottom > 0, top / np.where(bottom > 0, bottom, 1.0), np.nan)
            replicates[name].append(top)
    tail = (1.0 - level) / 2.0
    return {name: tuple(float(q) for q in np.nanquantile(np.concatenate(parts), [tail, 1.0 - tail]))
            for name, parts in replicates.items()}


def off_policy_value(study: LoggedStudy, target: Any, *, estimators: Sequence[str] = ESTIMATORS,
                     outcome_model: Any = None, folds: int = 2, bootstrap: int = 0, level: float = 0.95,
                     seed: int = 0, tiny: float = 1e-3) -> OffPolicyValue:
    """Off-policy value of ``target`` from the logged ``study``, with intervals and overlap diagnostics.

    Parameters
    ----------
    study : a ``LoggedStudy`` (contexts as features (n, p), actions, rewards, propensities in (0, 1]).
    target : the target policy: ``"uniform"``, an (n, K) array of its action probabilities at the
        logged contexts, or a callable features (n, p) -> (n, K); rows sum to 1.
    estimators : any of "ipw", "snipw", "dm", "dr" (see the module docstring), in the table's order.
    outcome_model : the regressor for DM / DR (default ``Ridge(alpha=1.0)``), see ``cross_fit_outcomes``.
    folds : cross-fitting folds (>= 2).
    bootstrap : B > 0: percentile intervals over B resamples of the decisions (>= 10); 0: normal intervals
        from the influence functions.
    level : the intervals' confidence level, in (0, 1).
    seed : seed of the cross-fitting split and the bootstrap.
    tiny : propensities below it count as tiny in the overlap diagnostics, in (0, 1).

    Returns
    -------
    OffPolicyValue: ``.table`` (one row per estimator: estimate, se, ci_low, ci_high), ``.overlap``,
    ``.target`` (n, K), ``.outcome_predictions`` (n, K) and ``.fold`` (n,).

    Warns
    -----
    OverlapWarning : when the effective sample size is below 10% of n, logged propensities below
        ``tiny`` occur, the target puts over 1% of its mass where the logger gave probability below
        ``tiny``, or the mean weight is clearly not 1.
    """
    from scipy.stats import norm

    if not isinstance(study, LoggedStudy):
        raise ValidationError(f"study: expected a LoggedStudy (study.logged), got {type(study).__name__}")
    if isinstance(estimators, str):
        estimators = (estimators,)
    estimators = tuple(estimators)
    unknown = [name for name in estimators if name not in ESTIMATORS]
    if unknown or not estimators or len(set(estimators)) != len(estimators):
        raise ValidationError(f"estimators: expected distinct names among {ESTIMATORS}, got {estimators!r}")
    bootstrap = check_integer("bootstrap", bootstrap, minimum=0)
    if 0 < bootstrap < 10:
        raise ValidationError(f"bootstrap: expected 0 (normal intervals) or at least 10 resamples, got {bootstrap}")
    if not (isinstance(level, (int, float)) and 0 < level < 1):
        raise ValidationError(f"level: expected a confidence level in (0, 1), got {level!r}")
    if not (isinstance(tiny, (int, float)) and 0 < tiny < 1):
        raise ValidationError(f"tiny: expected a threshold in (0, 1), got {tiny!r}")
    seed = check_integer("seed", seed, minimum=0, maximum=2**32 - 1)

    n = study.num_decisions
    pi = target_probabilities(study, target)
    overlap = overlap_diagnostics(study, pi, tiny=tiny)
    problems = overlap.problems()
    if problems:
        warnings.warn(OverlapWarning("IPW is not to be trusted here; the doubly robust estimate is less affected: "
                                     + "; ".join(problems)), stacklevel=2)
    rows = np.arange(n)
    weights = pi[rows, study.actions] / study.propensities
    weighted = weights * study.rewards
    q_hat = fold = None
    if {"dm", "dr"} & set(estimators):
        q_hat, fold = cross_fit_outcomes(study, outcome_model=outcome_model, folds=folds, seed=seed)
        direct = np.sum(pi * q_hat, axis=1)

    # each estimator as (estimate, influence terms for its se, bootstrap (numerator, denominator))
    results: dict[str, tuple[float, np.ndarray, tuple[np.ndarray, np.ndarray | None]]] = {}
    for name in estimators:
        if name == "ipw":
            results[name] = (float(weighted.mean()), weighted, (weighted, None))
        elif name == "snipw":
            mean_weight = weights.mean()
            if mean_weight <= 0:
                raise ValidationError("target: every importance weight is 0 (the target never takes a logged action); "
                                      "the self-normalised estimate is undefined")
            value = float(weighted.sum() / weights.sum())
            results[name] = (value, weights * (study.rewards - value) / mean_weight, (weighted, weights))
        elif name == "dm":
            results[name] = (float(direct.mean()), direct, (direct, None))
        else:
            terms = direct + weights * (study.rewards - q_hat[rows, study.actions])
            results[name] = (float(terms.mean()), terms, (terms, None))

    z = float(norm.ppf(0.5 + level / 2.0))
    table = []
    for name, (estimate, terms, _) in results.items():
        se = float(terms.std(ddof=1) / np.sqrt(n))
        table.append({"estimator": name, "estimate": estimate, "se": se, "ci_low": estimate - z * se,
                      "ci_high": estimate + z * se, "interval": "normal", "level": level})
    if bootstrap:
        rng = np.random.default_rng([seed, 1])  # a stream apart from the cross-fitting split's
        intervals = _bootstrap_interval({name: parts for name, (_, _, parts) in results.items()}, n, bootstrap, level, rng)
        for row in table:
            row["ci_low"], row["ci_high"] = intervals[row["estimator"]]
            row["interval"] = "bootstrap"
    return OffPolicyValue(table=pd.DataFrame(table), overlap=overlap, target=pi, outcome_predictions=q_hat, fold=fold)
