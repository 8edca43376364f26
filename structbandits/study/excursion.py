"""The causal excursion effect of a binary treatment, from a micro-randomised log (WCLS).

Weighted and centred least squares (Boruvka, Almirall, Witkiewitz & Murphy 2018, JASA, "Assessing
time-varying causal effect moderation in mobile health"). At decision t the log holds the outcome
``Y_t``, the treatment ``A_t ∈ {0, 1}`` and the probability ``p_t = P(A_t = 1 | H_t)`` the treatment
was actually randomised with. The user chooses

* moderators ``S_t`` (n, q): the effect model is ``β(S_t) = S_tᵀβ`` (an intercept column is added by
  default, so with no moderators ``β`` is the marginal excursion effect);
* a control working model ``g(H_t)ᵀα`` with covariates ``G_t`` (n, r) (default: intercept + moderators);
* a reference probability ``p̃_t`` that depends on ``S_t`` only (default: the constant mean of the
  logged probabilities).

With weights ``W_t = (p̃_t / p_t)^A_t ((1 - p̃_t) / (1 - p_t))^(1 - A_t)`` and ``X_t = [G_t; (A_t - p̃_t) S_t]``,
``θ̂ = (α̂, β̂)`` solves ``Σ_t W_t (Y_t - X_tᵀθ) X_t = 0`` (weighted least squares). Because the treatment
is centred by a probability that depends on ``S_t`` only and the weights make ``A_t`` independent of
the rest of the history given ``S_t``, ``β̂`` is consistent for the moderated effect even when the
control model is wrong (omitted user effects, non-linear terms); only its efficiency suffers. An
ordinary regression with ``A_t × S_t`` interactions has no such protection when ``p_t`` depends on the
history.

Standard errors: the sandwich ``B⁻¹ M B⁻¹`` with bread ``B = Σ W X Xᵀ`` and meat ``M = Σ_i U_i U_iᵀ``,
where ``U_i`` sums ``W_t ε_t X_t`` over the decisions of participant ``i`` (``clusters``; without them
every decision is its own cluster, i.e. ``Σ W² ε² X Xᵀ``, HC0). Participants' decisions are dependent
(a participant's random effect on the treatment effect correlates their estimating functions), so pass
``clusters`` whenever a participant contributes several decisions. The plain sandwich is asymptotic in
the number of participants: with a few dozen it under-covers (about 90% for a nominal 95% with 30
participants in the tests' simulation). ``small_sample_correction=True`` with ``interval="t"`` is the
paper's remedy: each participant's residuals are inflated by their leverage (Mancl & DeRouen 2001) and
the intervals use t quantiles with ``clusters - dim(θ)`` degrees of freedom. An estimated ``p̃`` (the
default mean) is treated as known in the variance (when p̃ is constant and the control covariates
contain the moderators, β̂ and its sandwich do not depend on p̃ at all).

Probabilities must lie strictly inside (0, 1): a probability of 0 or 1 makes the weights undefined
(a decision that could not have gone the other way carries no information about the contrast). Log
clipped randomisation probabilities — the probabilities the action was actually drawn with.

Multi-arm logs: the analysis is of one binary contrast, e.g. arm k against the rest
(``binary_contrast``): ``A_t = 1[action_t ∈ treated]`` and ``p_t`` = the probability of the treated
arms. When the log holds only the chosen action's propensity, ``p_t`` is known only where a treated arm
was chosen, or for two arms; otherwise pass the full probability of the treated arms
(``treatment_probabilities``), or the full (n, K) action probabilities.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from structbandits.errors import ValidationError, check_finite

__all__ = ["ExcursionEffect", "binary_contrast", "excursion_effect", "excursion_effect_from_log"]

COLUMNS = ["estimate", "std_error", "statistic", "p_value", "ci_lower", "ci_upper"]


@dataclass(frozen=True)
class ExcursionEffect:
    """The result of ``excursion_effect``.

    Attributes
    ----------
    effects : DataFrame indexed by moderator term (``"intercept"`` first when added): β̂ (``estimate``),
        ``std_error``, ``statistic`` (z or t), two-sided ``p_value``, ``ci_lower``, ``ci_upper``.
    control : the same columns for the control working model's α̂ (a nuisance: its standard errors are
        valid only as far as the working model is).
    covariance : (q, q) sandwich covariance of β̂.
    full_covariance : (r + q, r + q) sandwich covariance of (α̂, β̂).
    n : number of decisions; n_clusters : number of clusters (participants; ``n`` without clusters).
    reference_probability : (n,) the p̃ used.
    interval : ``"normal"`` or ``"t"``; df : degrees of freedom of the t intervals (``n_clusters - r - q``).
    level : the confidence level; moderator_intercept : whether an intercept term was added to S.
    """

    effects: pd.DataFrame
    control: pd.DataFrame
    covariance: np.ndarray
    full_covariance: np.ndarray
    n: int
    n_clusters: int
    reference_probability: np.ndarray
    interval: str
    df: int
    level: float
    moderator_intercept: bool

    @property
    def beta(self) -> np.ndarray:
        """(q,) β̂."""
        return self.effects["estimate"].to_numpy()

    @property
    def std_error(self) -> np.ndarray:
        """(q,) sandwich standard errors of β̂."""
        return self.effects["std_error"].to_numpy()

    def effect_at(self, moderators) -> pd.DataFrame:
        """The moderated effect ``β(s) = sᵀβ̂`` with its standard error and interval at values ``s``.

        ``moderators`` is (m, q') or (q',) in the columns the moderators were given in (without the
        intercept, which is added as in the fit). Returns one row per ``s`` with ``COLUMNS``.
        """
        s = check_finite("moderators", moderators)
        q = len(self.effects) - int(self.moderator_intercept)
        s = s.reshape(1, -1) if s.ndim <= 1 else s
        if s.ndim != 2 or s.shape[1] != q:
            raise ValidationError(f"moderators: expected shape (m, {q}) or ({q},), got shape {np.shape(moderators)}")
        if self.moderator_intercept:
            s = np.hstack([np.ones((len(s), 1)), s])
        estimate = s @ self.beta
        se = np.sqrt(np.einsum("mi,ij,mj->m", s, self.covariance, s))
        return _table(estimate, se, self.interval, self.df, self.level, index=pd.RangeIndex(len(s)))


def _table(estimate, se, interval, df, level, index) -> pd.DataFrame:
    statistic = estimate / se
    dist = stats.t(df) if interval == "t" else stats.norm()
    quantile = dist.ppf(0.5 + level / 2)
    return pd.DataFrame({"estimate": estimate, "std_error": se, "statistic": statistic,
                         "p_value": 2 * dist.sf(np.abs(statistic)),
                         "ci_lower": estimate - quantile * se, "ci_upper": estimate + quantile * se}, index=index)


def _probabilities(name: str, value, n: int) -> np.ndarray:
    arr = check_finite(name, value)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        raise ValidationError(f"{name}: expected a number or shape ({n},) matching outcomes, got shape {arr.shape}")
    if np.any(arr <= 0) or np.any(arr >= 1):
        raise ValidationError(
            f"{name}: expected probabilities strictly inside (0, 1), got values in [{arr.min()}, {arr.max()}] "
            "(a probability of 0 or 1 makes the weights undefined; log clipped randomisation probabilities)")
    return arr


def _design(name: str, value, n: int, prefix: str) -> tuple[np.ndarray, list[str]]:
    if value is None:
        return np.zeros((n, 0)), []
    names = None
    if isinstance(value, pd.DataFrame):
        names = [str(c) for c in value.columns]
    elif isinstance(value, pd.Series):
        names = [str(value.name) if value.name is not None else f"{prefix}0"]
    arr = check_finite(name, value)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] != n:
        raise ValidationError(f"{name}: expected shape ({n},) or ({n}, columns) matching outcomes, got shape {arr.shape}")
    return arr, names or [f"{prefix}{j}" for j in range(arr.shape[1])]


def _names(name: str, given, default: list[str]) -> list[str]:
    if given is None:
        return default
    given = [str(g) for g in given]
    if len(given) != len(default):
        raise ValidationError(f"{name}: expected {len(default)} names, got {len(given)}")
    return given


def excursion_effect(outcomes, treatment, treatment_probability, *, moderators=None, control=None,
                     reference_probability=None, clusters=None, intercept: bool = True,
                     moderator_names=None, control_names=None, interval: str = "normal",
                     level: float = 0.95, small_sample_correction: bool = False) -> ExcursionEffect:
    """The (moderated) causal excursion effect of a binary treatment by weighted, centred least squares.

    Parameters
    ----------
    outcomes : (n,) proximal outcomes Y_t.
    treatment : (n,) treatments A_t in {0, 1} (bools accepted).
    treatment_probability : (n,) the probability P(A_t = 1 | H_t) each treatment was randomised with,
        strictly inside (0, 1).
    moderators : (n, q) or (n,) moderators S_t (a DataFrame's columns name the terms), or None for the
        marginal effect. The effect model is ``[1, S_t]ᵀβ`` (``[S_t]ᵀβ`` with ``intercept=False``).
    control : (n, r) covariates G_t of the control working model, or None for the moderators. An
        intercept is prepended to it too unless ``intercept=False``.
    reference_probability : p̃_t, a number or (n,) array in (0, 1) that may depend on S_t only;
        default the mean of ``treatment_probability``.
    clusters : (n,) participant ids (any labels) for the clustered sandwich; None treats decisions as
        independent (HC0) — pass them whenever a participant contributes several decisions.
    intercept : add an intercept column to both the moderators and the control covariates.
    moderator_names, control_names : names of the given columns (without the intercept).
    interval : ``"normal"`` (z) or ``"t"`` (t with ``n_clusters - r - q`` degrees of freedom).
    level : confidence level of the intervals, in (0, 1).
    small_sample_correction : replace each cluster's residuals ε_i by (I - H_ii)⁻¹ ε_i in the meat, with
        the leverage H_ii = X_i B⁻¹ X_iᵀ W_i (Mancl & DeRouen 2001, as in Boruvka et al. 2018 §4, who pair
        it with ``interval="t"``); for studies with few participants.

    Returns
    -------
    ExcursionEffect (``.effects``: β̂ per term with standard error, statistic, p-value, interval).
    """
    y = check_finite("outcomes", outcomes)
    if y.ndim != 1 or len(y) < 2:
        raise ValidationError(f"outcomes: expected shape (n,) with n >= 2, got shape {y.shape}")
    n = len(y)
    a = check_finite("treatment", treatment)
    if a.shape != (n,):
        raise ValidationError(f"treatment: expected shape ({n},) matching outcomes, got shape {a.shape}")
    if not np.all((a == 0) | (a == 1)):
        raise ValidationError(f"treatment: expected values in {{0, 1}}, got {np.unique(a)[:10].tolist()}")
    if a.min() == a.max():
        raise ValidationError(f"treatment: expected both treated and untreated decisions, got only A = {int(a[0])}")
    p = _probabilities("treatment_probability", treatment_probability, n)
    p_ref = _probabilities("reference_probability", p.mean() if reference_probability is None
                           else reference_probability, n)
    if interval not in ("normal", "t"):
        raise ValidationError(f"interval: expected 'normal' or 't', got {interval!r}")
    if not (isinstance(level, (int, float, np.floating)) and 0 < float(level) < 1):
        raise ValidationError(f"level: expected a number in (0, 1), got {level!r}")

    S, s_names = _design("moderators", moderators, n, "moderator_")
    s_names = _names("moderator_names", moderator_names, s_names)
    if control is None:
        G, g_names = S, s_names
    else:
        G, g_names = _design("control", control, n, "control_")
        g_names = _names("control_names", control_names, g_names)
    if intercept:
        S, s_names = np.hstack([np.ones((n, 1)), S]), ["intercept"] + s_names
        G, g_names = np.hstack([np.ones((n, 1)), G]), ["intercept"] + g_names
    if S.shape[1] == 0:
        raise ValidationError("moderators: expected at least one effect term, got none (no moderators and intercept=False)")

    dim = G.shape[1] + S.shape[1]
    weights = np.where(a == 1, p_ref / p, (1 - p_ref) / (1 - p))
    X = np.hstack([G, (a - p_ref)[:, None] * S])
    root = np.sqrt(weights)[:, None] * X
    rank = np.linalg.matrix_rank(root)
    if rank < dim:
        raise ValidationError(
            f"moderators and control: expected a design [G, (A - p̃) S] of full column rank {dim}, got rank {rank} "
            "(a constant or repeated column? an intercept is added unless intercept=False)")
    if clusters is None:
        cluster_index, n_clusters = np.arange(n), n
    else:
        labels = np.asarray(clusters)
        if labels.shape != (n,):
            raise ValidationError(f"clusters: expected shape ({n},) matching outcomes, got shape {labels.shape}")
        try:
            _, cluster_index = np.unique(labels, return_inverse=True)
        except TypeError:
            raise ValidationError("clusters: expected participant ids of one sortable type (ints or strings)") from None
        n_clusters = int(cluster_index.max()) + 1
    if n_clusters <= dim:
        raise ValidationError(f"clusters: expected more clusters ({n_clusters}) than coefficients ({dim}) "
                              "for a sandwich variance")

    theta, *_ = np.linalg.lstsq(root, np.sqrt(weights) * y, rcond=None)
    residual = y - X @ theta
    scores = (weights * residual)[:, None] * X                                   # (n, dim) estimating functions
    bread = root.T @ root
    if small_sample_correction:
        scores = _leverage_corrected(scores, X, weights, residual, bread, cluster_index, n_clusters)
    per_cluster = np.stack([np.bincount(cluster_index, scores[:, j], minlength=n_clusters)
                            for j in range(dim)], axis=1)
    meat = per_cluster.T @ per_cluster
    half = np.linalg.solve(bread, meat)                                         # B⁻¹ M
    cov = np.linalg.solve(bread, half.T)                                        # B⁻¹ M B⁻¹ (B symmetric)
    cov = (cov + cov.T) / 2
    se = np.sqrt(np.diag(cov))
    df = n_clusters - dim
    r = G.shape[1]
    effects = _table(theta[r:], se[r:], interval, df, float(level), index=pd.Index(s_names, name="term"))
    control_table = _table(theta[:r], se[:r], interval, df, float(level), index=pd.Index(g_names, name="term"))
    return ExcursionEffect(effects=effects, control=control_table, covariance=cov[r:, r:], full_covariance=cov,
                           n=n, n_clusters=n_clusters, reference_probability=p_ref, interval=interval, df=df,
                           level=float(level), moderator_intercept=bool(intercept))


def _leverage_corrected(scores, X, weights, residual, bread, cluster_index, n_clusters):
    """Estimating functions W_t X_t [(I - H_ii)⁻¹ ε_i]_t, cluster by cluster."""
    order = np.argsort(cluster_index, kind="stable")
    bounds = np.searchsorted(cluster_index[order], np.arange(n_clusters + 1))
    corrected = np.empty_like(scores)
    bread_inv_xt = np.linalg.solve(bread, X.T)                                  # B⁻¹ Xᵀ, (dim, n)
    for i in range(n_clusters):
        rows = order[bounds[i]:bounds[i + 1]]
        leverage = X[rows] @ bread_inv_xt[:, rows] * weights[rows]               # X_i B⁻¹ X_iᵀ W_i
        try:
            adjusted = np.linalg.solve(np.eye(len(rows)) - leverage, residual[rows])
        except np.linalg.LinAlgError:
            raise ValidationError("small_sample_correction: a participant alone determines some coefficient "
                                  "(leverage 1); use the plain sandwich or fewer terms") from None
        corrected[rows] = (weights[rows] * adjusted)[:, None] * X[rows]
    return corrected


def _treated_arms(treated) -> np.ndarray:
    arms = [treated] if isinstance(treated, (int, np.integer)) else list(treated) if isinstance(treated, Iterable) else None
    if not arms or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0 for k in arms):
        raise ValidationError(f"treated: expected an arm index or a collection of arm indices (>= 0), got {treated!r}")
    return np.unique(np.asarray(arms, dtype=np.int64))


def binary_contrast(actions, propensities, treated, *, num_actions: int | None = None,
                    treatment_probabilities=None) -> tuple[np.ndarray, np.ndarray]:
    """The binary treatment "a treated arm vs the rest" of a multi-arm log, and its probability.

    Parameters
    ----------
    actions : (n,) chosen arms (integers >= 0).
    propensities : (n, K) the full action probabilities of every decision, or (n,) the probability of
        the chosen action only.
    treated : an arm index, or a collection of them, counted as treatment (A_t = 1).
    num_actions : K, needed with (n,) propensities: with K = 2 and one treated arm,
        P(treated) = propensity where it was chosen and 1 - propensity elsewhere.
    treatment_probabilities : (n,) P(A_t = 1 | H_t) of every decision; required with (n,) propensities
        unless K = 2 (the chosen action's propensity does not say how likely the treated arm was on
        decisions where another arm was chosen). Checked against ``propensities`` where the single
        treated arm was chosen.

    Returns
    -------
    (treatment (n,) in {0, 1}, treatment_probability (n,)).
    """
    arms = _treated_arms(treated)
    acts = check_finite("actions", actions)
    if acts.ndim != 1 or not np.all(acts == np.round(acts)) or np.any(acts < 0):
        raise ValidationError(f"actions: expected shape (n,) of arm indices >= 0, got shape {acts.shape}")
    acts = acts.astype(np.int64)
    n = len(acts)
    a = np.isin(acts, arms).astype(np.float64)
    props = check_finite("propensities", propensities)
    if props.ndim == 2:
        if props.shape[0] != n or props.shape[1] <= max(acts.max(), arms.max()):
            raise ValidationError(f"propensities: expected shape ({n}, K) with K > every arm index, got shape {props.shape}")
        if np.any(props < 0) or np.any(np.abs(props.sum(axis=1) - 1) > 1e-6):
            raise ValidationError("propensities: expected rows of probabilities summing to 1")
        return a, props[:, arms].sum(axis=1)
    if props.shape != (n,):
        raise ValidationError(f"propensities: expected shape ({n},) or ({n}, K) matching actions, got shape {props.shape}")
    if treatment_probabilities is not None:
        p = _probabilities("treatment_probabilities", treatment_probabilities, n)
        chosen = a == 1 if len(arms) == 1 else np.zeros(n, bool)
        if np.any(np.abs(p[chosen] - props[chosen]) > 1e-6):
            raise ValidationError("treatment_probabilities: expected the chosen action's propensity where the treated "
                                  "arm was chosen, got different values (the probability of another arm?)")
        return a, p
    if num_actions == 2 and len(arms) == 1 and arms[0] <= 1:
        if acts.max() > 1:
            raise ValidationError(f"actions: expected arms 0 and 1 with num_actions=2, got arm {acts.max()}")
        return a, np.where(a == 1, props, 1 - props)
    raise ValidationError(
        "treatment_probabilities: required when only the chosen action's propensity is logged and there are more "
        f"than two arms (num_actions={num_actions}): P(treated) is unknown on decisions where another arm was chosen; "
        "pass treatment_probabilities (n,) or the full (n, K) action probabilities as propensities")


def excursion_effect_from_log(log: Any, treated, *, moderator_columns=None, control_columns=None,
                              clusters=None, num_actions: int | None = None, treatment_probabilities=None,
                              **options) -> ExcursionEffect:
    """``excursion_effect`` of "treated arms vs the rest" on a log with ``features`` (n, d), ``actions``
    (n,), ``rewards`` (n,) and ``propensities`` ((n,) chosen-action or (n, K)) attributes.

    Optional attributes used when present (as on ``study.LoggedStudy``): ``action_probabilities``
    (n, K) — preferred to ``propensities`` when not None; ``num_actions`` (unless given);
    ``feature_names`` (names of the terms). ``moderator_columns`` / ``control_columns`` select columns
    of ``features`` (defaults: no moderators, i.e. the marginal effect; every feature in the control
    model). ``treated``, ``num_actions`` and ``treatment_probabilities`` go to ``binary_contrast``;
    ``clusters`` and the remaining ``options`` to ``excursion_effect``.
    """
    for attribute in ("features", "actions", "rewards", "propensities"):
        if not hasattr(log, attribute):
            raise ValidationError(f"log: expected an object with a {attribute!r} attribute, got {type(log).__name__}")
    full = getattr(log, "action_probabilities", None)
    num_actions = getattr(log, "num_actions", None) if num_actions is None else num_actions
    a, p = binary_contrast(log.actions, log.propensities if full is None else full, treated,
                           num_actions=num_actions, treatment_probabilities=treatment_probabilities)
    features = check_finite("log.features", log.features)
    if features.ndim == 0 or len(features) != len(a):
        raise ValidationError(f"log.features: expected {len(a)} rows (one per action), got shape {features.shape}")
    features = features.reshape(len(features), -1)
    names = getattr(log, "feature_names", None)
    names = [str(x) for x in names] if names is not None and len(names) == features.shape[1] else \
        [f"feature_{j}" for j in range(features.shape[1])]

    def columns(name, selected, default):
        chosen = default if selected is None else list(selected)
        if any(isinstance(j, bool) or not isinstance(j, (int, np.integer)) or not 0 <= j < features.shape[1]
               for j in chosen):
            raise ValidationError(f"{name}: expected column indices in [0, {features.shape[1]}), got {selected!r}")
        return features[:, chosen], [names[j] for j in chosen]

    S, s_names = columns("moderator_columns", moderator_columns, [])
    G, g_names = columns("control_columns", control_columns, list(range(features.shape[1])))
    return excursion_effect(log.rewards, a, p, moderators=S, control=G, clusters=clusters,
                            moderator_names=s_names, control_names=g_names, **options)
