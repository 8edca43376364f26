"""OnlineAgent: decisions against the policy's own functions, delayed / batched / out-of-order
rewards, clear errors, the decision store, and the crash story (a SIGKILL-ed process, reloaded).
The store's rows are read with the standard library's sqlite3, not with the package's store code;
concurrency, restarts and the CSV export are tested in test_study_store.py."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from structbandits import ValidationError
from structbandits.agents import lin_ts
from structbandits.study import OnlineAgent
from structbandits.agents.standard_ts import standard_ts

K, D = 3, 2


@pytest.fixture(scope="module")
def policy():
    return lin_ts(jnp.zeros(D), jnp.eye(D), 0.5, num_actions=K, propensity_draws=8)


def contexts(n, seed=0):
    return np.random.default_rng(seed).normal(size=(n, D))


def rows(database, table="decisions"):
    """Every row of ``table`` in ``database`` (an SQLite file) but its time and worker, in key order."""
    with sqlite3.connect(database) as connection:
        connection.row_factory = sqlite3.Row
        key = "decision_id" if table == "decisions" else "sequence"
        found = connection.execute(f"SELECT * FROM {table} ORDER BY study_id, {key}").fetchall()
    return [{k: row[k] for k in row.keys() if k not in ("time", "worker", "study_id")} for row in found]


def test_decisions_and_delayed_out_of_order_batched_rewards_match_the_policy(policy, tmp_path):
    """The oracle: the policy's own init/act/update, driven by hand with the documented keys."""
    agent = OnlineAgent(policy, key=7, store=tmp_path / "study.db", name="lints")
    init_key, decision_root, _ = jax.random.split(jax.random.PRNGKey(7), 3)
    state = policy.init(init_key)
    act, update = jax.jit(policy.act), jax.jit(policy.update)
    xs = contexts(6)
    decisions = [agent.select(x) for x in xs[:4]]
    for i, decision in enumerate(decisions):
        action, info = act(state, jax.random.fold_in(decision_root, i), jnp.asarray(xs[i]))
        assert (decision.decision_id, decision.action, decision.model_version) == (i, int(action), 0)
        assert decision.propensity == float(info.propensity)
    # rewards arrive late, out of order and in a batch: decision 2 first, then 3 and 0 together
    agent.observe(2, 0.5)
    agent.observe([3, 0], [-0.25, 1.0])
    assert agent.pending == {1: decisions[1].action} and agent.model_version == 3
    for i, reward in ((2, 0.5), (3, -0.25), (0, 1.0)):
        state = update(state, jnp.asarray(xs[i]), jnp.asarray(decisions[i].action, dtype=jnp.int64), jnp.asarray(reward))
    np.testing.assert_array_equal(agent.state.posterior.precision_chol, state.posterior.precision_chol)
    np.testing.assert_array_equal(agent.state.posterior.info, state.posterior.info)
    fifth = agent.select(xs[4])  # decided by the model with 3 observations
    action, _ = act(state, jax.random.fold_in(decision_root, 4), jnp.asarray(xs[4]))
    assert (fifth.action, fifth.model_version) == (int(action), 3)


def test_every_decision_is_in_the_store_before_it_is_returned(policy, tmp_path):
    agent = OnlineAgent(policy, key=0, store=tmp_path / "study.db", name="lints", worker="phone-server-1")
    decision = agent.select([0.25, -1.5])
    (row,) = rows(tmp_path / "study.db")  # another connection sees it: committed
    assert row == {"decision_id": 0, "context": "[0.25, -1.5]", "action": decision.action,
                   "propensity": decision.propensity, "model_version": 0}
    agent.observe(0, 0.75)
    assert rows(tmp_path / "study.db", "outcomes") == [{"sequence": 0, "decision_id": 0, "reward": "0.75",
                                                        "context": None}]
    frame = agent.decisions()
    assert list(frame.columns) == ["decision_id", "time", "context", "action", "propensity", "model_version", "worker"]
    assert frame.worker.tolist() == ["phone-server-1"]
    # the log_dir form keeps the store in log_dir/study.db
    folder = OnlineAgent(policy, key=0, log_dir=tmp_path / "log", name="lints")
    folder.select([0.25, -1.5])
    assert rows(tmp_path / "log" / "study.db") == [row]


def test_clear_errors(policy, tmp_path):
    agent = OnlineAgent(policy, key=0, store=tmp_path / "study.db", name="lints")
    with pytest.raises(ValidationError, match="no decision has been made yet; call select"):
        agent.observe(0, 1.0)
    agent.select([0.0, 1.0])
    agent.select([1.0, 0.0])
    agent.observe(0, 1.0)
    agent.observe(0, 1.0)  # the same reward again (a retried request): a no-op
    assert agent.model_version == 1 and len(rows(tmp_path / "study.db", "outcomes")) == 1
    cases = [
        (lambda: agent.observe(0, 2.0), "decision 0 has already been observed with reward 1.0, got 2.0"),
        (lambda: agent.observe(5, 1.0), "unknown id 5"),
        (lambda: agent.observe(-1, 1.0), "unknown id -1"),
        (lambda: agent.observe(1.5, 1.0), "decision_id: expected an integer"),
        (lambda: agent.observe(1, float("nan")), "reward: expected finite values"),
        (lambda: agent.observe(1, [1.0, 2.0]), r"reward: expected shape \(\)"),
        (lambda: agent.observe([1, 1], [1.0, 2.0]), r"decision_id\[1\]: decision 1 appears twice"),
        (lambda: agent.observe([1], [1.0, 2.0]), "one reward per decision id"),
        (lambda: agent.observe([1, 0], [1.0, 3.0]), r"decision_id\[1\]: decision 0 has already been observed"),
        (lambda: agent.select([1.0, 2.0, 3.0]), r"context: expected shape \(2,\), got shape \(3,\)"),
        (lambda: agent.select([1.0, np.inf]), "context: expected finite values"),
        (lambda: agent.select({"x": [1.0, 2.0]}), "context: expected a context with the structure"),
    ]
    for call, message in cases:
        with pytest.raises(ValidationError, match=message):
            call()
    assert agent.pending == {1: agent.pending[1]} and agent.model_version == 1  # nothing half-applied
    assert len(rows(tmp_path / "study.db", "outcomes")) == 1  # the batch [1, 0] wrote nothing


def test_first_context_or_reward_the_policy_cannot_use_is_rejected(policy, tmp_path):
    agent = OnlineAgent(policy, key=0, store=tmp_path / "study.db", name="lints")
    with pytest.raises(ValidationError, match="context: the policy cannot act on a context"):
        agent.select(np.zeros((K + 1, D)))  # per-arm contexts for the wrong number of arms
    agent.select(np.zeros(D))
    with pytest.raises(ValidationError, match=r"reward: expected shape \(\) \(a scalar\), got shape \(3,\)"):
        agent.observe(0, np.zeros(3))
    vector = OnlineAgent(policy, key=0, store=tmp_path / "vector.db", name="lints", reward_shape=(3,))
    vector.select(np.zeros(D))
    with pytest.raises(ValidationError, match="reward: the policy cannot update on a reward of shape|reward: expected a reward"):
        vector.observe(0, np.zeros(3))  # LinTS learns from scalar rewards only
    with pytest.raises(ValidationError, match="key: expected an integer seed or a jax.random.PRNGKey"):
        OnlineAgent(policy, key="seed", store=tmp_path / "other.db", name="lints")
    with pytest.raises(ValidationError, match=r"key: study 'lints' in .* was created with root key \[0, 0\], got \[0, 1\]"):
        OnlineAgent(policy, key=1, store=tmp_path / "study.db", name="lints")  # another study's key, one store
    with pytest.raises(ValidationError, match="name: study 'lints' in .* was created for model 'lints', got 'linucb'"):
        OnlineAgent(policy, store=tmp_path / "study.db", name="linucb", study="lints")
    with pytest.raises(ValidationError, match=r"hyperparameters\['sigma0'\]: study 'lints' .* saved with None, got 2.0"):
        OnlineAgent(policy, store=tmp_path / "study.db", name="lints", hyperparameters={"sigma0": 2.0})
    with pytest.raises(ValidationError, match="policy: study 'lints' .* was created by a policy whose state"):
        OnlineAgent(lin_ts(jnp.zeros(D), jnp.eye(D), 0.5, num_actions=K + 1), store=tmp_path / "study.db", name="lints")
    with pytest.raises(ValidationError, match="key: study 'new' is not in .* yet; a new study needs a key"):
        OnlineAgent(policy, store=tmp_path / "study.db", name="new")
    with pytest.raises(ValidationError, match="store: expected exactly one of store"):
        OnlineAgent(policy, key=0, name="lints")
    with pytest.raises(ValidationError, match="store: expected a database file or URL, got the folder"):
        OnlineAgent(policy, key=0, store=tmp_path, name="lints")
    with pytest.raises(ValidationError, match="policy: expected a Policy"):
        OnlineAgent(object(), key=0, store=tmp_path / "other.db", name="lints")


def test_pytree_contexts_with_a_context_given_at_observe_time(tmp_path):
    """A dict context (cell per decision), and the update context passed to observe (known later)."""
    policy = standard_ts(3, num_cells=2, cell_of=lambda c: c["cell"], propensity_draws=4)
    example = {"cell": np.int64(0), "load": np.zeros(2)}
    agent = OnlineAgent(policy, key=1, store=tmp_path / "study.db", name="ts-cells", example_context=example)
    first = agent.select({"cell": 1, "load": [0.5, 0.25]})
    agent.observe(first.decision_id, 80.0, context={"cell": 0, "load": [0.5, 0.25]})
    state = policy.update(policy.init(None), {"cell": jnp.asarray(0)}, jnp.asarray(first.action), jnp.asarray(80.0))
    np.testing.assert_array_equal(agent.state.arms.mean, state.arms.mean)
    with pytest.raises(ValidationError, match=r"context\['cell'\]: expected integers"):
        agent.select({"cell": 0.5, "load": [0.0, 0.0]})
    second = agent.select({"cell": 1, "load": [1.0, 2.0]})
    agent.save(tmp_path / "agent.npz")
    with pytest.raises(ValidationError, match="pass an example context"):
        OnlineAgent.load(tmp_path / "agent.npz", policy, name="ts-cells")
    again = OnlineAgent.load(tmp_path / "agent.npz", policy, name="ts-cells", example_context=example)
    assert again.pending == {second.decision_id: second.action}
    with pytest.raises(ValidationError, match="pass an example context to open it"):
        OnlineAgent(policy, store=tmp_path / "study.db", name="ts-cells")
    # the update context given at observe time is the one the restored agent replays with
    replayed = OnlineAgent(policy, store=tmp_path / "study.db", name="ts-cells", example_context=example,
                           from_snapshot=False)
    np.testing.assert_array_equal(replayed.state.arms.mean, state.arms.mean)


@pytest.mark.slow  # a fresh process / a second compile: about 10-20 s idle
def test_posterior_passthrough(policy, tmp_path):
    agent = OnlineAgent(policy, key=0, store=tmp_path / "study.db", name="lints")
    agent.observe(agent.select([1.0, 0.0]).decision_id, 2.0)
    draws = agent.posterior_draws(2000)
    assert draws["theta"].shape == (2000, K, D)
    # arm posteriors N(m, S) with S^-1 = I + x x^T / 0.25 for the pulled arm: its first coordinate has sd sqrt(1/5)
    pulled = agent.decisions().action[0]
    assert abs(draws["theta"][:, int(pulled), 0].std() - 0.2**0.5) < 0.04
    idata = agent.to_arviz(num_draws=50)
    assert idata.posterior["theta"].shape == (4, 50, K, D)  # diagnostics.policy_to_arviz's four chains
    no_posterior = OnlineAgent(lin_ts(jnp.zeros(D), jnp.eye(D), 0.5, num_actions=K)._replace(posterior_draws=None),
                               key=0, store=tmp_path / "other.db", name="lints")
    with pytest.raises(ValidationError, match="posterior_draws"):
        no_posterior.posterior_draws()


CRASH_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import jax.numpy as jnp, numpy as np
    import structbandits
    from structbandits.agents import lin_ts
    from structbandits.study import OnlineAgent

    structbandits.configure()  # as the test process (conftest) runs

    folder = sys.argv[1]
    policy = lin_ts(jnp.zeros(2), jnp.eye(2), 0.5, num_actions=3, propensity_draws=8)
    xs = np.random.default_rng(0).normal(size=(20, 2))
    agent = OnlineAgent(policy, key=11, store=folder + "/study.db", name="lints", hyperparameters={"sigma0": 1.0})
    for x in xs[:6]:
        agent.select(x)
    agent.observe([4, 1, 2], [0.5, -1.0, 0.25])
    agent.save(folder + "/agent.npz")
    agent.select(xs[6])          # decided after the snapshot: only the store knows it
    agent.observe(0, 2.0)        # observed after the snapshot
    agent.select(xs[7])
    print("before-kill", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    print("never printed", flush=True)
""")


def continue_study(agent, xs):
    """What happens after the crash (or, for the uninterrupted agent, simply next)."""
    agent.observe([7, 3], [1.5, -0.5])
    decisions = [agent.select(x) for x in xs[8:12]]
    agent.observe([9, 5, 10], [0.1, 0.2, 0.3])
    decisions.append(agent.select(xs[12]))
    return [(d.decision_id, d.action, d.propensity, d.model_version) for d in decisions]


@pytest.mark.slow  # a fresh process / a second compile: about 10-20 s idle
def test_a_killed_agent_reloads_with_its_store_intact_and_continues_identically(policy, tmp_path):
    killed = tmp_path / "killed"
    killed.mkdir()
    script = tmp_path / "crash.py"
    script.write_text(CRASH_SCRIPT)
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, str(script), str(killed)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert done.stdout.strip() == "before-kill"
    log_at_crash = rows(killed / "study.db")
    assert [r["decision_id"] for r in log_at_crash] == list(range(8))

    # the uninterrupted study, in this process, with the same seed, contexts and rewards
    xs = np.random.default_rng(0).normal(size=(20, 2))
    reference = OnlineAgent(policy, key=11, store=tmp_path / "reference.db", name="lints",
                            hyperparameters={"sigma0": 1.0})
    for x in xs[:6]:
        reference.select(x)
    reference.observe([4, 1, 2], [0.5, -1.0, 0.25])
    reference.select(xs[6])
    reference.observe(0, 2.0)
    reference.select(xs[7])
    assert rows(tmp_path / "reference.db") == log_at_crash

    resumed = OnlineAgent.load(killed / "agent.npz", policy, name="lints", hyperparameters={"sigma0": 1.0})
    assert resumed.num_decisions == 8 and resumed.model_version == 4  # caught up with the store after the snapshot
    assert resumed.pending == reference.pending
    assert continue_study(resumed, xs) == continue_study(reference, xs)
    for table in ("decisions", "outcomes"):
        assert rows(killed / "study.db", table) == rows(tmp_path / "reference.db", table)
    for got, want in zip(jax.tree.leaves(resumed.state), jax.tree.leaves(reference.state)):
        np.testing.assert_array_equal(got, want)


def test_a_snapshot_file_is_rejected_by_a_store_it_does_not_belong_to(policy, tmp_path):
    agent = OnlineAgent(policy, key=3, store=tmp_path / "study.db", name="lints")
    agent.observe(agent.select([0.0, 1.0]).decision_id, 1.0)
    agent.save(tmp_path / "agent.npz")
    resumed = OnlineAgent.load(tmp_path / "agent.npz", policy, name="lints")
    assert (resumed.num_decisions, resumed.model_version, resumed.restored_from) == (1, 1, 1)
    assert resumed.select([0.5, 0.5]).decision_id == 1
    with pytest.raises(ValidationError, match="the snapshot's study 'lints' is not in"):
        OnlineAgent.load(tmp_path / "agent.npz", policy, name="lints", store=tmp_path / "empty.db")
    other = OnlineAgent(policy, key=4, store=tmp_path / "other.db", name="lints")  # another seed's study
    with pytest.raises(ValidationError, match=r"key: study 'lints' .* was created with root key \[0, 4\]"):
        OnlineAgent.load(tmp_path / "agent.npz", policy, name="lints", store=tmp_path / "other.db")
    same_key = OnlineAgent(policy, key=3, store=tmp_path / "same-key.db", name="lints")  # same key, no outcomes yet
    with pytest.raises(ValidationError, match="holds 0 outcomes of study 'lints', fewer than the snapshot's 1"):
        OnlineAgent.load(tmp_path / "agent.npz", policy, name="lints", store=tmp_path / "same-key.db")
    same_key.observe(same_key.select([0.0, 1.0]).decision_id, 5.0)  # another reward than the snapshot's
    with pytest.raises(ValidationError, match="the snapshot and the store do not belong together"):
        OnlineAgent.load(tmp_path / "agent.npz", policy, name="lints", store=tmp_path / "same-key.db")
    for opened in (agent, resumed, other, same_key):
        opened.close()
