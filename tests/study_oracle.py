"""Oracles for tests of live studies (the store, the service): the stored rows by raw SQL, and the policy's own
``init`` / ``act`` / ``update`` driven by hand in the stored outcome order with the documented keys (decision i
acts with ``fold_in(decision stream, i)`` on the state after its ``model_version`` outcomes). Neither uses the
store's or the agent's code."""

from __future__ import annotations

import json

import jax
import numpy as np
import sqlalchemy as sa


def raw_rows(url, study):
    """(decisions, outcomes) of ``study`` by raw SQL, as plain dicts in key order."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            study_id = connection.execute(sa.text("SELECT study_id FROM studies WHERE name = :n"), {"n": study}).scalar_one()
            decisions = [dict(r._mapping) for r in connection.execute(sa.text(
                "SELECT * FROM decisions WHERE study_id = :s ORDER BY decision_id"), {"s": study_id})]
            outcomes = [dict(r._mapping) for r in connection.execute(sa.text(
                "SELECT * FROM outcomes WHERE study_id = :s ORDER BY sequence"), {"s": study_id})]
    finally:
        engine.dispose()
    return decisions, outcomes


def policy_oracle(policy, key):
    """(policy, init key, decision stream, jitted act, jitted update) of a study with root seed ``key``."""
    init_key, decision_root, _ = jax.random.split(jax.random.PRNGKey(key), 3)
    return policy, init_key, decision_root, jax.jit(policy.act), jax.jit(policy.update)


def replay(oracle, decisions, outcomes):
    """States after 0, 1, ... outcomes (in sequence order), and each decision as the policy makes it."""
    policy, init_key, decision_root, act, update = oracle
    states = [policy.init(init_key)]
    by_id = {d["decision_id"]: d for d in decisions}
    for outcome in outcomes:
        decision = by_id[outcome["decision_id"]]
        context = np.asarray(json.loads(outcome["context"] or decision["context"]), dtype=np.float64)
        states.append(update(states[-1], context, np.asarray(decision["action"], dtype=np.int64),
                             np.asarray(json.loads(outcome["reward"]), dtype=np.float64)))
    made = []
    for decision in decisions:
        action, info = act(states[decision["model_version"]], jax.random.fold_in(decision_root, decision["decision_id"]),
                           np.asarray(json.loads(decision["context"]), dtype=np.float64))
        made.append((int(action), float(info.propensity)))
    return states, made
