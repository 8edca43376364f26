"""The study file (study.study_file), the decision service (study.service) and ``structbandits serve``.

Oracles, none of them the package's own code: a two-arm LinTS clipped to [p_min, p_max] worked out with
NumPy and SciPy from the stored rows (each arm's Gaussian posterior from the first ``model_version``
outcomes, P(arm 0) = Φ(mean gap / sd of the gap), clipped — for two arms the uniform mixing is a clamp);
the rows read back by raw SQL; the policy built by hand from ``agents`` and driven by hand in the stored
outcome order with the documented keys (``study_oracle.replay``); what each client was answered.

One in-process app (FastAPI's TestClient) serves the endpoint contract; one test starts a real server
(``structbandits serve`` on a free loopback port) and drives it with four concurrent clients. ``--workers N``
is checked without spawning: what uvicorn is handed, and the factory each worker process calls. (Several
processes on one store: tests/test_study_store.py.)
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import httpx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm
from typer.testing import CliRunner

from structbandits import ValidationError
from structbandits.agents import clipped, lin_ts, lin_ts_nig, lin_ts_two_arm_probabilities, standard_ts
from structbandits.cli import app as cli
from structbandits.study import online
from structbandits.study.study_file import build_policy, load_study_file, parse_study_file
from study_oracle import policy_oracle, raw_rows, replay

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # starlette's TestClient on httpx

TestClient = pytest.importorskip("fastapi.testclient").TestClient
from structbandits.study.service import create_app  # noqa: E402  (needs fastapi: the serve extra)

ROOT = Path(__file__).resolve().parents[1]
TOKEN, TOKEN_ENV = "s3cret-token", "STRUCTBANDITS_TEST_SERVICE_TOKEN"
KEY, SIGMA0, NOISE, P_MIN, P_MAX = 11, 2.0, 0.5, 0.1, 0.9
STUDY = f"""
name = "svc"
store = "svc.db"
key = {KEY}
context_shape = [2]
token_env = "{TOKEN_ENV}"

[policy]
kind = "lints"
num_actions = 2
num_features = 2
sigma0 = {SIGMA0}
noise_scale = {NOISE}

[clipping]
p_min = {P_MIN}
p_max = {P_MAX}
"""
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TRUTH = np.array([[0.2, -0.5], [0.6, 0.4]])  # arm a's reward is x·TRUTH[a] (+ noise)


def hand_policy():
    """The study's policy built by hand from the agents (sigma0 is a prior sd: the covariance is sigma0² I)."""
    return clipped(lin_ts(jnp.zeros(2), SIGMA0**2 * jnp.eye(2), NOISE, num_actions=2), num_actions=2,
                   p_min=P_MIN, p_max=P_MAX, probabilities=lin_ts_two_arm_probabilities)


def reward_of(x, action, rng):
    return float(x @ TRUTH[action] + 0.1 * rng.normal())


def closed_form(decisions, outcomes):
    """Per decision: the clipped probability of its action, and each arm's posterior (mean, covariance) after
    all outcomes, from the rows alone (NumPy / SciPy)."""
    by_id = {d["decision_id"]: d for d in decisions}
    precision = [np.eye(2) / SIGMA0**2 for _ in range(2)]
    information = [np.zeros(2) for _ in range(2)]
    posteriors = [(precision[0].copy(), precision[1].copy(), information[0].copy(), information[1].copy())]
    for outcome in outcomes:
        decision = by_id[outcome["decision_id"]]
        x = np.asarray(json.loads(outcome["context"] or decision["context"]))
        arm = decision["action"]
        precision[arm] = precision[arm] + np.outer(x, x) / NOISE**2
        information[arm] = information[arm] + x * json.loads(outcome["reward"]) / NOISE**2
        posteriors.append((precision[0].copy(), precision[1].copy(), information[0].copy(), information[1].copy()))
    propensities = []
    for decision in decisions:
        p0, p1, i0, i1 = posteriors[decision["model_version"]]
        x = np.asarray(json.loads(decision["context"]))
        gap = x @ np.linalg.solve(p0, i0) - x @ np.linalg.solve(p1, i1)
        sd = math.sqrt(x @ np.linalg.solve(p0, x) + x @ np.linalg.solve(p1, x))
        first = min(max(norm.cdf(gap / sd), P_MIN), P_MAX)
        propensities.append(first if decision["action"] == 0 else 1.0 - first)
    p0, p1, i0, i1 = posteriors[-1]
    arms = [(np.linalg.solve(p, i), np.linalg.inv(p)) for p, i in ((p0, i0), (p1, i1))]
    return np.array(propensities), arms


def write_study(folder, text=STUDY):
    path = folder / "study.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def oracle():
    return policy_oracle(hand_policy(), KEY)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    folder = tmp_path_factory.mktemp("service")
    app = create_app(write_study(folder), token=TOKEN)
    with TestClient(app) as client:
        yield client, app, folder


def store_url(folder):
    return f"sqlite:///{folder / 'svc.db'}"


# ------------------------------------------------------------------ the study file
def test_the_example_study_file_loads_and_builds_the_policy_it_declares():
    study = load_study_file(ROOT / "examples" / "study.toml")
    assert (study.name, study.kind, study.num_actions, study.context_shape, study.token_env) == \
        ("mood-mrt", "lints", 2, (2,), "MOOD_MRT_TOKEN")
    assert study.store == str(ROOT / "examples" / "mood-mrt.db")   # relative to the file, not the working directory
    assert (study.clipping.p_min, study.clipping.p_max, study.clipping.probabilities) == (0.1, 0.9, "exact")
    assert study.hyperparameters()["num_actions"] == 2 and study.update_interval_s is None
    built = build_policy(study)
    by_hand = clipped(lin_ts(jnp.zeros(2), jnp.eye(2), 0.5, num_actions=2), num_actions=2, p_min=0.1, p_max=0.9,
                      probabilities=lin_ts_two_arm_probabilities)
    for got, want in zip(jax.tree.leaves(built.params), jax.tree.leaves(by_hand.params)):
        np.testing.assert_array_equal(got, want)


def test_each_kind_builds_the_agent_with_the_files_settings(tmp_path):
    cases = [
        ({"kind": "lints", "num_actions": 3, "num_features": 2, "sigma0": SIGMA0, "prior_mean": 0.5, "noise_scale": NOISE},
         lin_ts(jnp.full(2, 0.5), SIGMA0**2 * jnp.eye(2), NOISE, num_actions=3)),
        ({"kind": "lints-nig", "num_actions": 3, "num_features": 2, "sigma0": SIGMA0, "noise_alpha": 3.0,
          "noise_beta": 2.0}, lin_ts_nig(jnp.zeros(2), SIGMA0**2 * jnp.eye(2), 3.0, 2.0, num_actions=3)),
        ({"kind": "standard-ts", "num_actions": 3, "prior_mean": 1.0, "prior_kappa": 2.0},
         standard_ts(3, prior_mean=1.0, prior_kappa=2.0)),
    ]
    for table, by_hand in cases:
        study = parse_study_file({"name": "s", "store": "s.db", "key": 0, "context_shape": [2], "policy": table},
                                 base=tmp_path)
        for got, want in zip(jax.tree.leaves(build_policy(study).params), jax.tree.leaves(by_hand.params)):
            np.testing.assert_array_equal(got, want)
    study = parse_study_file({"name": "s", "store": "s.db", "key": 0, "context_shape": [3, 2], "update_interval_s": 60,
                              "policy": cases[1][0], "clipping": {"p_min": 0.05}}, base=tmp_path)
    assert (study.update_interval_s, study.clipping.probabilities, study.policy["propensity_draws"]) == \
        (60.0, "monte-carlo", 0)


BASE = {"name": "s", "store": "s.db", "key": 1, "context_shape": [2],
        "policy": {"kind": "lints", "num_actions": 2, "num_features": 2}}


@pytest.mark.parametrize("change, message", [
    ({"token": "abc"}, "token: never put the token in the study file"),
    ({"stores": "x"}, "stores: unknown key at the top level; expected one of: clipping, context_shape"),
    ({"key": None}, "key: required, missing"),
    ({"key": -1}, "key: expected an integer >= 0"),
    ({"key": "seven"}, "key: expected an integer, got 'seven'"),
    ({"policy": {"kind": "ucb"}}, "policy.kind: expected one of lints, lints-nig, standard-ts, got 'ucb'"),
    ({"policy": {"kind": "lints", "num_actions": 2}}, "policy.num_features: required for kind 'lints'"),
    ({"policy": {**BASE["policy"], "noise_alpha": 1.0}}, "policy.noise_alpha: unknown key for kind 'lints'"),
    ({"policy": {**BASE["policy"], "num_actions": 1}}, "policy.num_actions: expected an integer >= 2, got 1"),
    ({"policy": {**BASE["policy"], "sigma0": "big"}}, "policy.sigma0: expected a number, got 'big'"),
    ({"policy": {**BASE["policy"], "propensity_draws": "many"}}, 'policy.propensity_draws: expected an integer >= 0 or "exact"'),
    ({"context_shape": [3]}, r"context_shape: expected \[2\] \(shared by the arms\) or \[2, 2\]"),
    ({"context_shape": 2}, r"context_shape: expected \[d\] or \[K, d\], got 2"),
    ({"update_every": 2, "update_interval_s": 60}, "update_every, update_interval_s: expected one update schedule"),
    ({"update_interval_s": 0}, "update_interval_s: expected values > 0, got 0"),
    ({"token_env": "MY TOKEN"}, "token_env: expected the name of an environment variable"),
    ({"clipping": {"p_min": 0.6}}, r"clipping.p_min, clipping.p_max: expected p_min <= 1/K <= p_max .* got 0.6 and 1.0"),
    ({"clipping": {"p_max": 1.5}}, r"clipping.p_max: expected a probability in \[0, 1\], got 1.5"),
    ({"clipping": {"p_min": 0.1, "bound": 1}}, "clipping.bound: unknown key"),
    ({"clipping": {"p_min": 0.1}, "policy": {**BASE["policy"], "propensity_draws": 10}},
     "policy.propensity_draws: with \\[clipping\\] the action distribution is computed by the clipping"),
    ({"clipping": {"probabilities": "exact"}, "policy": {**BASE["policy"], "num_actions": 3}},
     "clipping.probabilities: expected \"monte-carlo\" \\(the closed form exists for kind 'lints' with two actions\\)"),
])
def test_study_file_errors_name_the_key(change, message, tmp_path):
    raw = {**BASE, **change}
    raw = {k: v for k, v in raw.items() if v is not None}
    with pytest.raises(ValidationError, match=message):
        parse_study_file(raw, base=tmp_path)


def test_agent_errors_name_the_policy_key_and_bad_files_are_named(tmp_path):
    for setting, message in (("sigma0", "policy.sigma0: expected values > 0, got -1.0"),
                             ("noise_scale", "policy.noise_scale: expected values > 0, got -1.0")):
        study = parse_study_file({**BASE, "policy": {**BASE["policy"], setting: -1.0}}, base=tmp_path)
        with pytest.raises(ValidationError, match=message):
            build_policy(study)
    with pytest.raises(ValidationError, match="study file: expected a TOML file, got .* \\(no such file\\)"):
        load_study_file(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("name = \n")
    with pytest.raises(ValidationError, match="study file: .*bad.toml is not valid TOML"):
        load_study_file(tmp_path / "bad.toml")


# ------------------------------------------------------------------ the endpoint contract, in process
def test_write_endpoints_need_the_bearer_token(service):
    client, _, folder = service
    before = len(raw_rows(store_url(folder), "svc")[0])
    for path, body in (("/decisions", {"context": [1.0, 0.0]}), ("/outcomes", {"decision_id": 0, "reward": 1.0})):
        missing = client.post(path, json=body)
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer", missing.text
        assert client.post(path, json=body, headers={"Authorization": "Basic czpz"}).status_code == 401
        wrong = client.post(path, json=body, headers={"Authorization": "Bearer not-the-token"})
        assert wrong.status_code == 403 and "not this study's" in wrong.json()["detail"]
    assert len(raw_rows(store_url(folder), "svc")[0]) == before   # nothing written
    assert client.get("/health").status_code == 200                # reading needs no token


def test_decisions_and_outcomes_follow_the_policy_and_its_exact_clipped_probabilities(service, oracle):
    client, app, folder = service
    rng = np.random.default_rng(0)
    answered, pending = {}, []
    for step in range(14):
        x = rng.normal(size=2)
        reply = client.post("/decisions", json={"context": x.tolist()}, headers=AUTH)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        answered[body["decision_id"]] = body
        pending.append((body["decision_id"], reward_of(x, body["action"], rng)))
        if step % 3 == 2:   # rewards arrive late, in batches, out of order
            for decision_id, reward in reversed(pending):
                reply = client.post("/outcomes", json={"decision_id": decision_id, "reward": reward}, headers=AUTH)
                assert reply.status_code == 200 and reply.json()["decision_id"] == decision_id, reply.text
            pending.clear()
    decisions, outcomes = raw_rows(store_url(folder), "svc")
    assert [d["decision_id"] for d in decisions] == list(range(len(decisions))) and len(decisions) >= 14
    for d in decisions:   # what the client was told is what the store holds
        if d["decision_id"] in answered:
            a = answered[d["decision_id"]]
            assert (a["action"], a["propensity"], a["model_version"], a["time"]) == \
                (d["action"], d["propensity"], d["model_version"], d["time"])
    propensities, _ = closed_form(decisions, outcomes)
    np.testing.assert_allclose([d["propensity"] for d in decisions], propensities, rtol=1e-10, atol=1e-12)
    assert all(P_MIN <= d["propensity"] <= P_MAX for d in decisions)
    assert any(d["propensity"] in (P_MIN, P_MAX) for d in decisions) and any(d["model_version"] > 5 for d in decisions)
    _, made = replay(oracle, decisions, outcomes)
    assert made == [(d["action"], d["propensity"]) for d in decisions]   # bit for bit, the keys as documented


def test_outcomes_are_idempotent_404_for_an_unknown_id_409_for_a_conflict(service):
    client, _, folder = service
    decision_id = client.post("/decisions", json={"context": [0.5, -1.0]}, headers=AUTH).json()["decision_id"]
    first = client.post("/outcomes", json={"decision_id": decision_id, "reward": 0.25}, headers=AUTH)
    again = client.post("/outcomes", json={"decision_id": decision_id, "reward": 0.25}, headers=AUTH)
    assert first.status_code == again.status_code == 200 and first.json() == again.json()
    conflict = client.post("/outcomes", json={"decision_id": decision_id, "reward": 0.5}, headers=AUTH)
    assert conflict.status_code == 409
    assert conflict.json()["detail"] == (f"decision_id: decision {decision_id} has already been observed with reward "
                                         "0.25, got 0.5 (a conflicting duplicate)")
    unknown = client.post("/outcomes", json={"decision_id": decision_id + 1, "reward": 0.5}, headers=AUTH)
    assert unknown.status_code == 404 and f"got unknown id {decision_id + 1}" in unknown.json()["detail"]
    _, outcomes = raw_rows(store_url(folder), "svc")
    assert [json.loads(o["reward"]) for o in outcomes if o["decision_id"] == decision_id] == [0.25]


@pytest.mark.parametrize("path, body, message", [
    ("/decisions", {"context": [1.0, 2.0, 3.0]}, "context: expected shape (2,), got shape (3,)"),
    ("/decisions", {"context": [[1.0, 2.0], [3.0]]}, "context: expected numbers in a rectangular array"),
    ("/outcomes", {"decision_id": 0, "reward": float("nan")}, "reward: expected finite values, got nan"),
    ("/outcomes", {"decision_id": 0, "reward": 1.0, "context": [1.0]}, "context: expected shape (2,), got shape (1,)"),
])
def test_bad_values_are_422_with_the_message_naming_the_argument(service, path, body, message):
    client, _, _ = service
    if path == "/outcomes":
        client.post("/decisions", json={"context": [0.0, 1.0]}, headers=AUTH)
    reply = client.post(path, content=json.dumps(body), headers={**AUTH, "Content-Type": "application/json"})
    assert reply.status_code == 422 and reply.json()["detail"].startswith(message), reply.text
    schema = client.post("/decisions", json={"context": "x"}, headers=AUTH)   # the body's own schema: FastAPI's 422
    assert schema.status_code == 422 and schema.json()["detail"][0]["loc"][:2] == ["body", "context"]


def test_posterior_summary_and_health_match_the_closed_form(service):
    client, app, folder = service
    decisions, outcomes = raw_rows(store_url(folder), "svc")
    _, arms = closed_form(decisions, outcomes)
    x = [0.5, -1.5]
    reply = client.get("/posterior", params={"num_draws": 2000, "context": json.dumps(x)})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["model_version"], body["num_draws"], body["sites"]["theta"]["shape"]) == (len(outcomes), 2000, [2, 2])
    mean, sd = np.array(body["sites"]["theta"]["mean"]), np.array(body["sites"]["theta"]["sd"])
    exact_sd = np.array([np.sqrt(np.diag(cov)) for _, cov in arms])
    assert np.all(np.abs(mean - np.array([m for m, _ in arms])) < 4 * exact_sd / np.sqrt(2000))
    np.testing.assert_allclose(sd, exact_sd, rtol=0.1)
    reward_mean = np.array(body["expected_reward"]["mean"])
    reward_sd = np.array([np.sqrt(np.asarray(x) @ cov @ np.asarray(x)) for _, cov in arms])
    assert np.all(np.abs(reward_mean - [np.asarray(x) @ m for m, _ in arms]) < 4 * reward_sd / np.sqrt(2000))
    np.testing.assert_allclose(body["expected_reward"]["sd"], reward_sd, rtol=0.1)
    assert client.get("/posterior").json()["expected_reward"] is None
    bad = client.get("/posterior", params={"context": "[1, 2, 3]"})
    assert bad.status_code == 422 and bad.json()["detail"].startswith("context: expected shape (2,)")
    assert client.get("/posterior", params={"num_draws": 1}).status_code == 422
    health = client.get("/health").json()
    assert health == {"status": "ok", "study": "svc", "kind": "lints", "decisions": len(decisions),
                      "outcomes": len(outcomes), "pending": len(decisions) - len(outcomes),
                      "model_version": len(outcomes), "worker": app.state.agent.worker}


def test_the_openapi_document_lists_the_endpoints_and_the_bearer_scheme(service):
    client, _, _ = service
    document = client.get("/openapi.json").json()
    assert set(document["paths"]) == {"/decisions", "/outcomes", "/posterior", "/health"}
    assert set(document["paths"]["/decisions"]) == {"post"} and set(document["paths"]["/health"]) == {"get"}
    assert document["paths"]["/outcomes"]["post"]["security"] == [{"HTTPBearer": []}]
    assert "security" not in document["paths"]["/health"]["get"]
    schemas = document["components"]["schemas"]
    assert {"decision_id", "reward", "context"} <= set(schemas["OutcomeRequest"]["properties"])
    assert {"decision_id", "action", "propensity", "model_version"} <= set(schemas["DecisionResponse"]["properties"])
    assert {"404", "409"} <= set(document["paths"]["/outcomes"]["post"]["responses"])
    assert "swagger" in client.get("/docs").text.lower()


def test_an_update_interval_records_outcomes_at_once_and_updates_the_model_on_schedule(tmp_path, monkeypatch, oracle):
    """A fake clock for the agent's schedule; the service's background thread applies the outcomes when due."""
    clock = [1000.0]
    monkeypatch.setattr(online, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))
    path = write_study(tmp_path, STUDY.replace('context_shape = [2]', 'context_shape = [2]\nupdate_interval_s = 50'))
    rng = np.random.default_rng(3)
    with TestClient(create_app(path, token=TOKEN)) as client:
        for _ in range(3):
            x = rng.normal(size=2)
            body = client.post("/decisions", json={"context": x.tolist()}, headers=AUTH).json()
            client.post("/outcomes", json={"decision_id": body["decision_id"], "reward": reward_of(x, body["action"], rng)},
                        headers=AUTH)
        assert client.post("/decisions", json={"context": [1.0, 1.0]}, headers=AUTH).json()["model_version"] == 0
        health = client.get("/health").json()
        assert (health["outcomes"], health["model_version"]) == (3, 0)   # recorded at once, not yet applied
        clock[0] += 51   # due: no request needed, the scheduled thread catches up (it wakes every second at most)
        deadline = time.monotonic() + 30
        while client.get("/health").json()["model_version"] != 3:
            assert time.monotonic() < deadline, "the scheduled update did not run"
            time.sleep(0.05)
        assert client.post("/decisions", json={"context": [1.0, 1.0]}, headers=AUTH).json()["model_version"] == 3
    decisions, outcomes = raw_rows(f"sqlite:///{tmp_path / 'svc.db'}", "svc")
    assert [d["model_version"] for d in decisions] == [0, 0, 0, 0, 3]
    _, made = replay(oracle, decisions, outcomes)
    assert made == [(d["action"], d["propensity"]) for d in decisions]


def test_a_standard_ts_study_serves_clipped_decisions_and_its_nig_posterior(tmp_path):
    """Non-contextual NIG Thompson sampling, three arms, Monte-Carlo action probabilities clipped from below;
    oracle: the conjugate NIG update by hand and the Student-t marginal of each arm's mean."""
    path = write_study(tmp_path, STUDY.replace('kind = "lints"', 'kind = "standard-ts"')
                       .replace("num_actions = 2\nnum_features = 2", "num_actions = 3")
                       .replace(f"sigma0 = {SIGMA0}\nnoise_scale = {NOISE}",
                                "prior_mean = 0.0\nprior_kappa = 1.0\nprior_alpha = 2.0\nprior_beta = 1.0")
                       .replace(f"p_max = {P_MAX}", "p_max = 1.0\nprobability_draws = 100")
                       .replace(f"p_min = {P_MIN}", "p_min = 0.2"))
    with TestClient(create_app(path, token=TOKEN)) as client:
        decision = client.post("/decisions", json={"context": [0.3, 0.1]}, headers=AUTH).json()
        assert 0.2 <= decision["propensity"] <= 1.0
        assert client.post("/outcomes", json={"decision_id": 0, "reward": 2.0}, headers=AUTH).status_code == 200
        body = client.get("/posterior", params={"num_draws": 4000}).json()
    kappa, alpha = 2.0, 2.5                                   # κ + 1, α + 1/2
    mean, beta = 2.0 / kappa, 1.0 + 1.0 * 2.0**2 / (2 * kappa)  # (κm + r)/κ', β + κ(r − m)²/(2κ')
    scale = math.sqrt(beta / (alpha * kappa))                 # μ ~ t_{2α}(mean, scale)
    prior_sd, post_sd = math.sqrt(1.0 / 2.0) * math.sqrt(4 / 2), scale * math.sqrt(5 / 3)
    want_mean = np.zeros(3)
    want_mean[decision["action"]] = mean
    want_sd = np.full(3, prior_sd)
    want_sd[decision["action"]] = post_sd
    got = body["expected_reward"]
    assert body["sites"]["mean_reward"]["shape"] == [1, 3] and got["context"] is None
    assert np.all(np.abs(np.array(got["mean"]) - want_mean) < 5 * want_sd / np.sqrt(4000))
    np.testing.assert_allclose(got["sd"], want_sd, rtol=0.15)
    decisions, _ = raw_rows(f"sqlite:///{tmp_path / 'svc.db'}", "svc")
    assert decisions[0]["propensity"] == decision["propensity"]


# ------------------------------------------------------------------ the command
def test_serve_errors_exit_2_with_one_line(tmp_path, monkeypatch):
    runner = CliRunner()
    result = runner.invoke(cli, ["serve", str(tmp_path / "missing.toml")])
    assert result.exit_code == 2 and "error: study file: expected a TOML file" in result.output
    path = write_study(tmp_path)
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    result = runner.invoke(cli, ["serve", str(path)])
    assert result.exit_code == 2 and f"error: token_env: expected the environment variable {TOKEN_ENV}" in result.output
    monkeypatch.setenv("OTHER_TOKEN", "x")
    result = runner.invoke(cli, ["serve", str(path), "--token-env", "OTHER_TOKEN", "--workers", "0"])
    assert result.exit_code == 2 and "error: --workers: expected an integer >= 1, got 0" in result.output
    monkeypatch.setitem(sys.modules, "uvicorn", None)   # the serve extra not installed
    result = runner.invoke(cli, ["serve", str(path)])
    assert result.exit_code == 2 and "pip install 'structbandits[serve]'" in result.output
    assert "Traceback" not in result.output


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_serve_with_worker_processes_hands_uvicorn_the_factory_that_builds_each_workers_app(tmp_path, monkeypatch):
    """``--workers 2``: uvicorn gets an import string and the environment names the study and the token's variable;
    the factory, called as a worker process calls it, serves the study (here in process, without spawning)."""
    from uvicorn.importer import import_from_string

    from structbandits.runtime import CACHE_VARIABLE
    from structbandits.study.service import STUDY_VARIABLE, TOKEN_ENV_VARIABLE

    for variable in (STUDY_VARIABLE, TOKEN_ENV_VARIABLE, CACHE_VARIABLE):   # restored after the test
        monkeypatch.setenv(variable, os.environ.get(variable, ""))
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    calls = []
    monkeypatch.setattr("uvicorn.run", lambda application, **options: calls.append((application, options)))
    path = write_study(tmp_path)
    result = CliRunner().invoke(cli, ["serve", str(path), "--workers", "2", "--port", "8123"])
    assert result.exit_code == 0, result.output
    (application, options), = calls
    assert options == {"host": "127.0.0.1", "port": 8123, "workers": 2, "factory": True, "log_level": "warning"}
    assert os.environ[STUDY_VARIABLE] == str(path.resolve()) and os.environ[TOKEN_ENV_VARIABLE] == TOKEN_ENV
    with TestClient(import_from_string(application)()) as client:
        assert client.post("/decisions", json={"context": [1.0, 0.0]}).status_code == 401
        assert client.post("/decisions", json={"context": [1.0, 0.0]}, headers=AUTH).json()["decision_id"] == 0
    decisions, _ = raw_rows(store_url(tmp_path), "svc")
    assert len(decisions) == 1 and decisions[0]["worker"].endswith(f":{os.getpid()}")


def test_a_real_server_serves_four_concurrent_clients(tmp_path, oracle):
    path = write_study(tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, TOKEN_ENV: TOKEN, "JAX_PLATFORMS": "cpu"}
    with open(tmp_path / "server.log", "w") as log:
        server = subprocess.Popen([sys.executable, "-m", "structbandits", "serve", str(path), "--port", str(port)],
                                  stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the server did not answer /health"
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        clients, steps, answered, errors = 4, 6, [], []

        def user(seed):
            rng = np.random.default_rng(seed)
            previous = None
            try:
                with httpx.Client(base_url=base, headers=AUTH, timeout=60) as http:
                    for _ in range(steps):   # each reward arrives one decision late
                        x = rng.normal(size=2)
                        reply = http.post("/decisions", json={"context": x.tolist()})
                        reply.raise_for_status()
                        answered.append(reply.json())
                        if previous is not None:
                            http.post("/outcomes", json=previous).raise_for_status()
                            http.post("/outcomes", json=previous).raise_for_status()   # a retry: idempotent
                        previous = {"decision_id": reply.json()["decision_id"],
                                    "reward": reward_of(x, reply.json()["action"], rng)}
                    http.post("/outcomes", json=previous).raise_for_status()
            except Exception as err:   # reported below: a thread's exception does not fail the test by itself
                errors.append(err)

        threads = [threading.Thread(target=user, args=(seed,)) for seed in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not errors, errors
        health = httpx.get(f"{base}/health").json()
        assert (health["decisions"], health["outcomes"], health["pending"]) == (clients * steps, clients * steps, 0)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(30)
    decisions, outcomes = raw_rows(store_url(tmp_path), "svc")
    assert [d["decision_id"] for d in decisions] == list(range(clients * steps))           # no duplicate, none lost
    assert sorted(o["decision_id"] for o in outcomes) == list(range(clients * steps))      # every outcome, once
    assert sorted(a["decision_id"] for a in answered) == list(range(clients * steps))
    stored = {d["decision_id"]: d for d in decisions}
    for a in answered:   # what each client was told is what the store holds
        d = stored[a["decision_id"]]
        assert (a["action"], a["propensity"], a["model_version"]) == (d["action"], d["propensity"], d["model_version"])
    assert all(P_MIN <= d["propensity"] <= P_MAX for d in decisions)
    propensities, _ = closed_form(decisions, outcomes)
    np.testing.assert_allclose([d["propensity"] for d in decisions], propensities, rtol=1e-10, atol=1e-12)
    _, made = replay(oracle, decisions, outcomes)
    assert made == [(d["action"], d["propensity"]) for d in decisions]
