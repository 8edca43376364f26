"""The decision service of a live study: an HTTP front end (FastAPI) to its ``OnlineAgent`` and store.

    structbandits serve STUDY.toml --port 8000 --workers 2      # the command line (uvicorn)
    app = create_app("STUDY.toml", token="...")                 # or the app itself (ASGI)

Endpoints (OpenAPI docs at ``/docs``):

``POST /decisions``  ``{"context": [...]}`` -> ``{"decision_id", "action", "propensity", "model_version", "time"}``;
                     the decision is committed to the store before the answer is sent.
``POST /outcomes``   ``{"decision_id", "reward"[, "context"]}`` -> ``{"decision_id", "model_version"}``;
                     idempotent by decision id (the same reward again is a no-op), 409 for another reward
                     of an observed decision, 404 for an unknown id.
``GET /posterior``   mean and sd of the policy's posterior draws by site, and of each arm's expected reward
                     (at ``?context=[...]`` for the linear kinds).
``GET /health``      the study, its counts and this worker's model version.

The write endpoints need ``Authorization: Bearer TOKEN`` when the app has a token (401 without one, 403
for another); a bad value is a 422 whose ``detail`` is the ``ValidationError`` message naming it.

Concurrency: the endpoints that call JAX are plain ``def`` functions, run in the server's thread pool;
the agent serialises them with its lock (its model is one mutable state), and the store's transactions
make decisions of several processes (``--workers N``, each building its own agent from the store) safe.
One worker thread instead of the pool measured no better (README, ``benchmarks/bench_service.py``). With
``update_interval_s`` a background thread catches the model up on that schedule, off the request path.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from structbandits.agents.thompson import arm_scores
from structbandits.errors import ValidationError
from structbandits.study.decision_log import ContextSpec
from structbandits.study.store import ConflictingOutcomeError, UnknownDecisionError
from structbandits.study.study_file import StudyFile, load_study_file, open_agent

__all__ = ["STUDY_VARIABLE", "TOKEN_ENV_VARIABLE", "app_from_environment", "create_app", "token_from_environment"]

STUDY_VARIABLE = "STRUCTBANDITS_SERVE_STUDY"          # the study file a worker process serves
TOKEN_ENV_VARIABLE = "STRUCTBANDITS_SERVE_TOKEN_ENV"  # the name of the variable holding its token

Context = list[float] | list[list[float]]


class DecisionRequest(BaseModel):
    context: Context = Field(description="The context: the study's context_shape, (d,) or (K, d); finite numbers.",
                             examples=[[1.0, -0.3]])


class DecisionResponse(BaseModel):
    decision_id: int = Field(description="Pass it to POST /outcomes with the reward.")
    action: int = Field(description="The arm to deliver, 0 ... K - 1.")
    propensity: float | None = Field(description="The probability the action was drawn with (exact under clipping); "
                                                 "null when the policy reports none.")
    model_version: int = Field(description="The number of outcomes in the model that decided.")
    time: str = Field(description="UTC time of the decision, ISO 8601.")


class OutcomeRequest(BaseModel):
    decision_id: int = Field(ge=0, description="The id POST /decisions returned.")
    reward: float = Field(description="The proximal outcome; finite.")
    context: Context | None = Field(None, description="A context to update with instead of the decision's own "
                                                      "(e.g. observed after the decision); default: the decision's.")


class OutcomeResponse(BaseModel):
    decision_id: int
    model_version: int = Field(description="The outcomes in this worker's model after recording it.")


class SiteSummary(BaseModel):
    shape: list[int] = Field(description="The site's shape per draw (e.g. [K, d] for theta).")
    mean: Any = Field(description="Posterior mean, nested lists of that shape.")
    sd: Any = Field(description="Posterior standard deviation, nested lists of that shape.")


class RewardSummary(BaseModel):
    context: Any = Field(description="The context the expected rewards are at (null for a non-contextual policy).")
    mean: list[float] = Field(description="Posterior mean of each arm's expected reward.")
    sd: list[float] = Field(description="Posterior sd of each arm's expected reward.")


class PosteriorResponse(BaseModel):
    study: str
    kind: str
    model_version: int
    num_draws: int
    sites: dict[str, SiteSummary]
    expected_reward: RewardSummary | None


class HealthResponse(BaseModel):
    status: str
    study: str
    kind: str
    decisions: int
    outcomes: int
    pending: int = Field(description="Decisions still waiting for their outcome.")
    model_version: int = Field(description="The outcomes in this worker's model.")
    worker: str


def _error(status: int) -> Any:
    async def handler(_request: Request, err: Exception) -> JSONResponse:
        return JSONResponse(status_code=status, content={"detail": str(err)})
    return handler


def _array(name: str, value: Any) -> np.ndarray:
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValidationError(f"{name}: expected numbers in a rectangular array, got {value!r}") from None


def _summary(draws: np.ndarray) -> SiteSummary:
    return SiteSummary(shape=list(draws.shape[1:]), mean=draws.mean(axis=0).tolist(), sd=draws.std(axis=0).tolist())


def _expected_reward(study: StudyFile, draws: dict[str, np.ndarray], context: str | None) -> RewardSummary | None:
    if study.kind == "standard-ts":  # mean_reward (n, cells = 1, K) is the expected reward itself
        rewards, at = draws["mean_reward"][:, 0, :], None
    elif context is None:
        return None
    else:
        try:
            parsed = json.loads(context)
        except json.JSONDecodeError as err:
            raise ValidationError(f"context: expected a JSON array such as [1.0, 0.3], got {context!r} ({err})") from None
        at = ContextSpec(study.example_context()).validate(_array("context", parsed))
        rewards = np.asarray(arm_scores(draws["theta"], at))  # (n, K)
        at = at.tolist()
    return RewardSummary(context=at, mean=rewards.mean(axis=0).tolist(), sd=rewards.std(axis=0).tolist())


def create_app(study: str | Path | StudyFile, *, token: str | None = None, worker: str | None = None) -> FastAPI:
    """The study's decision service, ready to serve (its agent opened on the store and compiled).

    Parameters
    ----------
    study : a study file's path or a parsed ``StudyFile`` (``study.study_file``).
    token : the bearer token the write endpoints require; None: they are open (loopback testing only).
    worker : the name this process records with its rows (default ``host:pid``).

    Returns
    -------
    A FastAPI app (ASGI): run it with uvicorn, or ``fastapi.testclient.TestClient(app)``. Its agent is
    ``app.state.agent``; the app's shutdown (lifespan) closes it.
    """
    if isinstance(study, (str, Path)):
        study = load_study_file(study)
    if not isinstance(study, StudyFile):
        raise ValidationError(f"study: expected a study file path or a StudyFile, got {type(study).__name__}")
    if token is not None and (not isinstance(token, str) or not token):
        raise ValidationError("token: expected a non-empty string (or None for no authentication)")
    agent = open_agent(study, worker=worker)
    try:
        agent.warm_up(study.example_context())
    except BaseException:
        agent.close()
        raise

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        stop = threading.Event()
        if study.update_interval_s is not None:  # the scheduled update runs here, not in a user's request
            def scheduled() -> None:  # the agent's clock says when it is due; look at least every second
                while not stop.wait(min(study.update_interval_s, 1.0)):
                    agent.catch_up()
            threading.Thread(target=scheduled, name="scheduled-update", daemon=True).start()
        try:
            yield
        finally:
            stop.set()
            agent.close()

    app = FastAPI(title=f"structbandits decision service: {study.name}", lifespan=lifespan,
                  description=study.description or f"Decisions of the {study.kind} study {study.name!r}.")
    app.state.agent, app.state.study = agent, study
    app.add_exception_handler(UnknownDecisionError, _error(404))
    app.add_exception_handler(ConflictingOutcomeError, _error(409))
    app.add_exception_handler(ValidationError, _error(422))
    bearer = HTTPBearer(auto_error=False, description="The study's token (the variable named by token_env).")

    def authorised(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if token is None:
            return
        if credentials is None:
            raise HTTPException(401, "expected an Authorization: Bearer TOKEN header", {"WWW-Authenticate": "Bearer"})
        if not secrets.compare_digest(credentials.credentials.encode(), token.encode()):
            raise HTTPException(403, "the bearer token is not this study's")

    @app.post("/decisions", response_model=DecisionResponse, dependencies=[Depends(authorised)],
              responses={401: {}, 403: {}, 422: {}})
    def decide(request: DecisionRequest) -> DecisionResponse:
        """Decide for a context: committed to the store before this answers."""
        decision = agent.select(_array("context", request.context))
        propensity = None if math.isnan(decision.propensity) else decision.propensity
        return DecisionResponse(decision_id=decision.decision_id, action=decision.action, propensity=propensity,
                                model_version=decision.model_version, time=decision.time)

    @app.post("/outcomes", response_model=OutcomeResponse, dependencies=[Depends(authorised)],
              responses={401: {}, 403: {}, 404: {}, 409: {}, 422: {}})
    def observe(request: OutcomeRequest) -> OutcomeResponse:
        """Record a decision's reward (idempotent: the same reward again is a no-op; another is a 409)."""
        context = None if request.context is None else _array("context", request.context)
        agent.observe(request.decision_id, request.reward, context=context)
        return OutcomeResponse(decision_id=request.decision_id, model_version=agent.model_version)

    @app.get("/posterior", response_model=PosteriorResponse, responses={422: {}})
    def posterior(num_draws: int = Query(1000, ge=10, le=10_000, description="Posterior draws to summarise."),
                  context: str | None = Query(None, description="A context as JSON, e.g. [1.0, 0.3]: adds each "
                                                                "arm's expected reward there (linear kinds).")
                  ) -> PosteriorResponse:
        """Mean and sd of the current posterior by site, and of each arm's expected reward."""
        draws = agent.posterior_draws(num_draws)
        return PosteriorResponse(study=study.name, kind=study.kind, model_version=agent.model_version,
                                 num_draws=num_draws, sites={site: _summary(value) for site, value in draws.items()},
                                 expected_reward=_expected_reward(study, draws, context))

    @app.get("/health", response_model=HealthResponse)
    def health() -> HealthResponse:
        """The study, its counts and this worker's model version."""
        decisions, outcomes = agent.store.counts(agent.store.study(study.name))
        return HealthResponse(status="ok", study=study.name, kind=study.kind, decisions=decisions, outcomes=outcomes,
                              pending=decisions - outcomes, model_version=agent.model_version, worker=agent.worker)

    return app


def token_from_environment(variable: str | None) -> str | None:
    """The token held by the environment variable ``variable`` (None: no token); an unset or empty variable
    is a ``ValidationError``."""
    if variable is None:
        return None
    value = os.environ.get(variable, "")
    if not value:
        raise ValidationError(f"token_env: expected the environment variable {variable} to hold the service's token, "
                              "got it unset or empty (export it, or name another with --token-env)")
    return value


def app_from_environment() -> FastAPI:
    """The app of a uvicorn worker process (``structbandits serve --workers N``): the study file named by
    ``STRUCTBANDITS_SERVE_STUDY``, the token held by the variable named by ``STRUCTBANDITS_SERVE_TOKEN_ENV``."""
    from structbandits.runtime import ensure_configured

    ensure_configured()  # a spawned worker starts without the parent's settings
    if STUDY_VARIABLE not in os.environ:
        raise ValidationError(f"{STUDY_VARIABLE}: expected the path of the study file to serve, got it unset")
    return create_app(os.environ[STUDY_VARIABLE], token=token_from_environment(os.environ.get(TOKEN_ENV_VARIABLE)))
