"""The decision store (study.store) behind OnlineAgent: concurrent processes, SIGKILL, restarts, idempotent
outcomes, the CSV export, and loading a store for analysis (study.logged.load_store, ``structbandits analyse``).

Oracles, none of them the store's own code: rows read with raw SQL (sqlite3 / SQLAlchemy ``text``); the
policy's own ``init`` / ``act`` / ``update`` driven by hand in the stored outcome order with the documented
keys (decision i acts with ``fold_in(decision stream, i)`` on the state after its ``model_version`` outcomes);
what the child processes printed after each call returned; an agent that never stopped; IPW by hand.

One module-scoped crowd of 4 child processes deciding and observing at once on one SQLite store, one of them
SIGKILL-ed at a random point while the others go on, serves the concurrency and the kill tests; ``STRUCTBANDITS_TEST_DATABASE_URL``
(e.g. ``postgresql+psycopg://user@localhost/db``) runs the same crowd against that server.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid

import jax
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from structbandits import ValidationError
from structbandits.cli import app
from structbandits.study import DecisionStore, OnlineAgent, load_decision_log, load_store, load_table, off_policy_value
from study_oracle import policy_oracle, raw_rows, replay

KEY = 5
WORKERS, STEPS = 4, 8
POLICY_SOURCE = textwrap.dedent("""
    import jax.numpy as jnp
    from structbandits.agents import clipped, lin_ts, lin_ts_two_arm_probabilities

    def make_policy():
        inner = lin_ts(jnp.zeros(2), jnp.eye(2), 0.5, num_actions=2)
        return clipped(inner, num_actions=2, p_min=0.1, p_max=0.9, probabilities=lin_ts_two_arm_probabilities)

    def reward_of(x, action):
        return float(x[0] if action == 1 else 0.5 * x[1])
""")
_namespace: dict = {}
exec(POLICY_SOURCE, _namespace)  # the same code the child processes run
make_policy, reward_of = _namespace["make_policy"], _namespace["reward_of"]
POLICY = make_policy()  # one object, so every agent in this process reuses the same compiled programs

CHILD = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    import structbandits
    structbandits.configure()
""") + POLICY_SOURCE + textwrap.dedent("""
    from structbandits.study import OnlineAgent

    store, study, worker, steps, go, seed = sys.argv[1:7]
    agent = OnlineAgent(make_policy(), store=store, name="lints", study=study, worker=worker)
    rng = np.random.default_rng(int(seed))
    previous = None

    def step():
        # decide, then report the previous decision's reward: outcomes arrive one decision late
        global previous
        x = rng.normal(size=2)
        decision = agent.select(x)
        print("D", decision.decision_id, flush=True)
        if previous is not None:
            agent.observe(previous[0], previous[1])
            print("O", previous[0], flush=True)
        previous = (decision.decision_id, reward_of(x, decision.action))

    step()  # the first decision compiles; the concurrent part starts together, after every child is ready
    print("READY", flush=True)
    while not os.path.exists(go):
        time.sleep(0.005)
    done = 0
    while int(steps) < 0 or done < int(steps):  # steps < 0: until killed
        step()
        done += 1
    agent.observe(previous[0], previous[1])
    print("O", previous[0], flush=True)
    print("DONE", flush=True)
""")


def child_environment():
    flags = os.environ.get("XLA_FLAGS", "")
    return {**os.environ, "JAX_PLATFORMS": "cpu", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1", "XLA_FLAGS": f"{flags} --xla_cpu_multi_thread_eigen=false".strip()}


def printed(path):
    return path.read_text().split("\n") if path.exists() else []


def said(output, what):
    """The decision ids a child printed after ``select`` ("D") or ``observe`` ("O") returned."""
    return [int(line.split()[1]) for line in output if line.split()[:1] == [what] and len(line.split()) == 2]


def wait_for(condition, processes, outputs, what, timeout=180.0):
    deadline = time.monotonic() + timeout
    while not condition():
        for process, output in zip(processes, outputs):
            if process.poll() is not None and process.returncode != -signal.SIGKILL:
                pytest.fail(f"a child exited with {process.returncode} before {what}:\n"
                            f"{output.with_suffix('.err').read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def run_crowd(url, folder, study, *, killer):
    """WORKERS processes deciding at once on one study, STEPS times each; with ``killer`` the last one ("killed")
    decides until it is SIGKILL-ed at a random point."""
    agent = OnlineAgent(POLICY, key=KEY, store=url, name="lints", study=study,
                        hyperparameters={"num_actions": 2, "p_min": 0.1})
    agent.close()
    script, go = folder / "child.py", folder / "go"
    script.write_text(CHILD)
    names = [f"worker-{i}" for i in range(WORKERS - 1)] + (["killed"] if killer else [f"worker-{WORKERS - 1}"])
    processes, outputs = [], []
    for i, name in enumerate(names):
        out = folder / f"{name}.out"
        with open(out, "w") as stdout, open(out.with_suffix(".err"), "w") as stderr:
            processes.append(subprocess.Popen(
                [sys.executable, str(script), url, study, name, str(-1 if name == "killed" else STEPS), str(go), str(i)],
                stdout=stdout, stderr=stderr, env=child_environment()))
        outputs.append(out)
    wait_for(lambda: all("READY" in printed(out) for out in outputs), processes, outputs, "every child to be ready")
    go.write_text("")
    kill_seed = random.randrange(10**6)
    if killer:
        after = random.Random(kill_seed).randrange(2, 6)
        wait_for(lambda: len(said(printed(outputs[-1]), "O")) >= after, processes, outputs, "the killed child's outcomes")
        time.sleep(random.Random(kill_seed).uniform(0.0, 0.03))  # somewhere inside a select or an observe
        processes[-1].send_signal(signal.SIGKILL)
        processes[-1].wait(30)
        assert processes[-1].returncode == -signal.SIGKILL
    for process, out in zip(processes[:WORKERS - 1] if killer else processes, outputs):
        assert process.wait(180) == 0, out.with_suffix(".err").read_text()[-3000:]
    return {name: printed(out) for name, out in zip(names, outputs)}, kill_seed


@pytest.fixture(scope="module")
def oracle():
    """The policy's own functions, jitted once, and the documented keys."""
    return policy_oracle(POLICY, KEY)


def check_crowd(url, study, lines, oracle):
    decisions, outcomes = raw_rows(url, study)
    ids = [d["decision_id"] for d in decisions]
    assert ids == list(range(len(ids)))                                     # contiguous, no duplicates
    assert [o["sequence"] for o in outcomes] == list(range(len(outcomes)))
    assert len({o["decision_id"] for o in outcomes}) == len(outcomes)
    assert all(0.1 <= d["propensity"] <= 0.9 for d in decisions)             # every propensity logged, clipped
    for name, output in lines.items():                                       # nothing lost, nothing foreign
        mine = [d["decision_id"] for d in decisions if d["worker"] == name]
        printed_ids = said(output, "D")
        assert printed_ids == mine or (name == "killed" and printed_ids == mine[:-1])  # killed after a commit, before printing
        observed = {o["decision_id"] for o in outcomes if o["worker"] == name}
        assert set(said(output, "O")) <= observed
        if name != "killed":
            assert len(mine) == STEPS + 1 and observed == set(mine)
    assert len(decisions) >= (WORKERS - 1) * (STEPS + 1) + 2
    sequence_of = {o["decision_id"]: o["sequence"] for o in outcomes}
    versions = [d["model_version"] for d in decisions]
    assert versions == sorted(versions)                                      # decisions caught up, in id order
    for name in lines:  # a worker reports decision k's reward before deciding k + 2: that decision saw it
        mine = [d for d in decisions if d["worker"] == name]
        for earlier, later in zip(mine, mine[2:]):
            assert later["model_version"] > sequence_of[earlier["decision_id"]]
    states, made = replay(oracle, decisions, outcomes)
    assert made == [(d["action"], d["propensity"]) for d in decisions]      # the policy's own decisions, bit for bit
    return decisions, outcomes, states


@pytest.fixture(scope="module")
def crowd(tmp_path_factory):
    folder = tmp_path_factory.mktemp("crowd")
    url = f"sqlite:///{folder / 'study.db'}"
    lines, kill_seed = run_crowd(url, folder, "crowd", killer=True)
    return url, folder, lines, kill_seed


def test_concurrent_processes_never_duplicate_or_lose_a_decision(crowd, oracle):
    url, _, lines, _ = crowd
    decisions, _, _ = check_crowd(url, "crowd", lines, oracle)
    assert {d["worker"] for d in decisions} == set(lines) and len(lines) == WORKERS


def test_a_sigkilled_process_loses_nothing_it_committed_and_the_store_opens_cleanly(crowd, oracle):
    url, folder, lines, kill_seed = crowd
    killed = lines["killed"]
    assert "DONE" not in killed and len(said(killed, "O")) >= 2, (kill_seed, killed)
    with sqlite3.connect(folder / "study.db") as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    decisions, outcomes, states = check_crowd(url, "crowd", lines, oracle)
    with OnlineAgent(POLICY, store=folder / "study.db", name="lints", study="crowd") as agent:
        assert (agent.num_decisions, agent.model_version) == (len(decisions), len(outcomes))
        for got, want in zip(jax.tree.leaves(agent.state), jax.tree.leaves(states[-1])):
            np.testing.assert_array_equal(got, want)
        assert set(agent.pending) == {d["decision_id"] for d in decisions} - {o["decision_id"] for o in outcomes}


@pytest.mark.skipif(not os.environ.get("STRUCTBANDITS_TEST_DATABASE_URL"),
                    reason="STRUCTBANDITS_TEST_DATABASE_URL is not set (e.g. postgresql+psycopg://user@localhost/db)")
def test_concurrent_processes_on_a_database_server(tmp_path, oracle):
    url = os.environ["STRUCTBANDITS_TEST_DATABASE_URL"]
    study = f"crowd-{uuid.uuid4().hex[:8]}"
    lines, _ = run_crowd(url, tmp_path, study, killer=True)
    check_crowd(url, study, lines, oracle)


def test_threads_sharing_agents_in_one_process(tmp_path, oracle):
    """Two agents on one store, one driven by three threads at once (a service's worker threads), one by one."""
    import threading

    agents = [OnlineAgent(POLICY, key=KEY, store=tmp_path / "threads.db", name="lints", worker=f"agent-{i}")
              for i in range(2)]
    errors = []
    read = agents[0].store.outcomes_after

    def slow_read(*args, **kwargs):  # a slow database: a wide window for two threads to apply the same outcomes
        rows = read(*args, **kwargs)
        time.sleep(0.02)
        return rows

    agents[0].store.outcomes_after = slow_read

    def work(agent, seed):
        rng = np.random.default_rng(seed)
        try:
            for _ in range(6):
                x = rng.normal(size=2)
                decision = agent.select(x)
                agent.observe(decision.decision_id, reward_of(x, decision.action))
        except Exception as err:  # reported below: a thread's exception does not fail the test by itself
            errors.append(err)

    threads = [threading.Thread(target=work, args=(agents[0] if i < 3 else agents[1], i)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    decisions, outcomes = raw_rows(f"sqlite:///{tmp_path / 'threads.db'}", "lints")
    assert [d["decision_id"] for d in decisions] == list(range(24)) and len(outcomes) == 24
    states, made = replay(oracle, decisions, outcomes)
    assert made == [(d["action"], d["propensity"]) for d in decisions]
    for agent in agents:
        agent.catch_up()
        for got, want in zip(jax.tree.leaves(agent.state), jax.tree.leaves(states[-1])):
            np.testing.assert_array_equal(got, want)
        agent.close()


# ------------------------------------------------------------------ restarts, in this process
XS = np.random.default_rng(1).normal(size=(16, 2))


def first_half(agent):
    decisions = [agent.select(x) for x in XS[:6]]
    agent.observe([4, 1, 2], [reward_of(XS[i], decisions[i].action) for i in (4, 1, 2)])
    agent.observe(0, 0.5, context=XS[0] + 1.0)  # updated with a context known only later
    decisions += [agent.select(x) for x in XS[6:8]]
    agent.observe(6, -0.25)
    return decisions


def second_half(agent, decisions):
    more = [agent.select(x) for x in XS[8:12]]
    agent.observe([7, 3, 9], [0.1, 0.2, 0.3])
    more += [agent.select(x) for x in XS[12:14]]
    agent.observe(5, 1.5)
    return decisions + more


def summary(agent, decisions):
    return [(d.decision_id, d.action, d.propensity, d.model_version) for d in decisions], jax.tree.leaves(agent.state)


def test_a_restarted_agent_continues_bit_identically(tmp_path, oracle):
    never_stopped = OnlineAgent(POLICY, key=KEY, store=tmp_path / "reference.db", name="lints")
    want, want_state = summary(never_stopped, second_half(never_stopped, first_half(never_stopped)))
    decisions, outcomes = raw_rows(f"sqlite:///{tmp_path / 'reference.db'}", "lints")
    states, made = replay(oracle, decisions, outcomes)   # the reference is the policy's own, too
    assert made == [(a, p) for _, a, p, _ in want]
    for got, expected in zip(want_state, jax.tree.leaves(states[-1])):
        np.testing.assert_array_equal(got, expected)

    for label, options in (("replayed", {}), ("snapshots", {"snapshot_every": 2})):
        store = tmp_path / f"{label}.db"
        agent = OnlineAgent(POLICY, key=KEY, store=store, name="lints", **options)
        decisions = first_half(agent)
        agent.close()
        resumed = OnlineAgent(POLICY, store=store, name="lints", **options)   # the key is the study's
        assert resumed.restored_from == (4 if options else 0) and resumed.model_version == 5
        got, got_state = summary(resumed, second_half(resumed, decisions))
        assert got == want, label
        for a, b in zip(got_state, want_state):
            np.testing.assert_array_equal(a, b)
        from_zero = OnlineAgent(POLICY, store=store, name="lints", from_snapshot=False)
        assert from_zero.restored_from == 0
        for a, b in zip(jax.tree.leaves(from_zero.state), want_state):
            np.testing.assert_array_equal(a, b)
        for opened in (resumed, from_zero):
            opened.close()

    agent = OnlineAgent(POLICY, key=KEY, store=tmp_path / "file.db", name="lints")
    decisions = first_half(agent)
    agent.save(tmp_path / "agent.npz")   # a snapshot file instead of the store's snapshots
    agent.close()
    resumed = OnlineAgent.load(tmp_path / "agent.npz", POLICY, name="lints")
    assert (resumed.restored_from, resumed.model_version) == (5, 5)
    got, got_state = summary(resumed, second_half(resumed, decisions))
    assert got == want
    for a, b in zip(got_state, want_state):
        np.testing.assert_array_equal(a, b)
    resumed.close()


def test_update_every_applies_outcomes_in_whole_blocks(tmp_path, oracle):
    agent = OnlineAgent(POLICY, key=KEY, store=tmp_path / "blocks.db", name="lints", update_every=3)
    decisions = []
    for i, x in enumerate(XS[:10]):
        decisions.append(agent.select(x))
        agent.observe(i, reward_of(x, decisions[-1].action))
    assert [d.model_version for d in decisions] == [0, 0, 0, 3, 3, 3, 6, 6, 6, 9]
    assert agent.model_version == 9
    rows, outcomes = raw_rows(f"sqlite:///{tmp_path / 'blocks.db'}", "lints")
    states, made = replay(oracle, rows, outcomes)
    assert made == [(d.action, d.propensity) for d in decisions]
    for got, want in zip(jax.tree.leaves(agent.state), jax.tree.leaves(states[9])):
        np.testing.assert_array_equal(got, want)
    agent.close()


# ------------------------------------------------------------------ outcomes are idempotent; clear errors
def test_outcomes_are_idempotent_by_decision_id_and_conflicts_write_nothing(tmp_path):
    path = tmp_path / "store.db"
    with DecisionStore(path) as store:
        info = store.open_study("s", policy_name="p", root_key=[0, 1], hyperparameters={})
        for i in range(3):
            with store.decide(info) as transaction:
                assert transaction.next_decision_id() == i
                transaction.insert_decision(i, "t", "[0.0]", 1, 0.5, 0, "w")
        assert store.record_outcomes(info, [(0, "1.0", None), (2, "2.0", "[1.0]")], time="t", worker="w") == [0, 1]
        assert store.record_outcomes(info, [(0, "1.0", None)], time="t", worker="w") == [None]   # the same: a no-op
        cases = [([(1, "0.5", None), (0, "3.0", None)], r"decision_id\[1\]: decision 0 has already been observed with "
                                                        "reward 1.0, got 3.0"),
                 ([(2, "2.0", None)], "decision 2 has already been observed with reward 2.0 and context \\[1.0\\]"),
                 ([(3, "1.0", None)], "decision_id: expected the id of a decision of study 's' \\(0 to 2\\), got unknown id 3"),
                 ([(-1, "1.0", None)], "unknown id -1")]
        for items, message in cases:
            with pytest.raises(ValidationError, match=message):
                store.record_outcomes(info, items, time="t", worker="w")
        assert store.pending(info) == {1: 1}
    with sqlite3.connect(path) as connection:   # decision 1's outcome of the failed batch was not written
        assert connection.execute("SELECT sequence, decision_id, reward FROM outcomes ORDER BY sequence").fetchall() == \
            [(0, 0, "1.0"), (1, 2, "2.0")]
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_store_errors_name_the_argument(tmp_path):
    with pytest.raises(ValidationError, match="store: expected a database file or URL, got the folder"):
        DecisionStore(tmp_path)
    with pytest.raises(ValidationError, match="store: cannot open 'nosuchdialect://x'"):
        DecisionStore("nosuchdialect://x")
    with pytest.raises(ValidationError, match=r"store: expected a decision store file .* \(no such file\)"):
        DecisionStore(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()
    with sqlite3.connect(tmp_path / "other.db") as connection:
        connection.execute("CREATE TABLE t (x)")
    with pytest.raises(ValidationError, match="store: expected a decision store, got .* without the tables"):
        DecisionStore(tmp_path / "other.db", create=False)
    with pytest.raises(ValidationError, match="busy_timeout: expected a positive number"):
        DecisionStore(tmp_path / "s.db", busy_timeout=0)
    with DecisionStore(tmp_path / "s.db") as store:
        store.open_study("a", policy_name="p", root_key=[0, 1], hyperparameters={})
        store.open_study("b", policy_name="p", root_key=[0, 2], hyperparameters={})
        with pytest.raises(ValidationError, match="study: .* holds 2 studies \\('a', 'b'\\); name one"):
            store.study()
        with pytest.raises(ValidationError, match="study: expected the name of a study in .* \\('a', 'b'\\), got 'c'"):
            store.study("c")
        with pytest.raises(ValidationError, match="study: expected a non-empty study name"):
            store.open_study("", policy_name="p", root_key=[0, 1], hyperparameters={})
    with sqlite3.connect(tmp_path / "s.db") as connection:
        connection.execute("UPDATE studies SET schema_version = 99 WHERE name = 'a'")
    with DecisionStore(tmp_path / "s.db") as store, pytest.raises(ValidationError, match="schema_version: .* schema 99"):
        store.study("a")


# ------------------------------------------------------------------ the CSV export and analysing a store
@pytest.fixture(scope="module")
def small_study(tmp_path_factory):
    """10 decisions, 8 rewards (decision 2's updated with a later context), exported; oracle: what select returned."""
    folder = tmp_path_factory.mktemp("small")
    with OnlineAgent(POLICY, key=KEY, store=folder / "study.db", name="lints",
                     hyperparameters={"num_actions": 2}) as agent:
        decisions = []
        for i, x in enumerate(XS[:10]):  # rewards arrive two decisions late: the propensities move off 1/2
            decisions.append(agent.select(x))
            if 2 <= i <= 9 and i - 2 != 2:
                agent.observe(i - 2, reward_of(XS[i - 2], decisions[i - 2].action))
        agent.observe(2, reward_of(XS[2], decisions[2].action), context=XS[2] * 2.0)
        rewards = np.array([reward_of(x, d.action) for x, d in zip(XS, decisions)])
        agent.export_csv(folder / "export")
    assert len({d.propensity for d in decisions}) > 5
    return folder, decisions, rewards


def test_the_csv_export_round_trips_through_load_decision_log(small_study):
    folder, decisions, rewards = small_study
    header = (folder / "export" / "decisions.csv").read_text().splitlines()[0]
    assert header == "decision_id,time,context,action,propensity,model_version,worker"
    assert json.loads((folder / "export" / "study.json").read_text())["hyperparameters"] == {"num_actions": 2}
    exported, stored = load_decision_log(folder / "export"), load_store(folder / "study.db")
    observed = list(range(8))
    for study in (exported, stored):
        assert (study.num_decisions, study.num_without_outcome, study.num_actions) == (8, 2, 2)
        np.testing.assert_array_equal(study.decision_ids, observed)
        np.testing.assert_array_equal(study.features, XS[observed])   # the decision's context, bit for bit
        np.testing.assert_array_equal(study.actions, [decisions[i].action for i in observed])
        np.testing.assert_array_equal(study.propensities, [decisions[i].propensity for i in observed])
        np.testing.assert_array_equal(study.rewards, rewards[observed])
        assert study.times[0] == np.datetime64(pd.Timestamp(decisions[0].time).tz_localize(None))
    with pytest.raises(ValidationError, match="study: expected the name of a study .* got 'other'"):
        load_store(folder / "study.db", study="other")
    with pytest.raises(ValidationError, match=r"store: expected a decision store file .* \(no such file\)"):
        load_store(folder / "missing.db")


def test_ipw_from_a_store_equals_ipw_from_the_same_table_and_by_hand(small_study, tmp_path):
    folder, decisions, rewards = small_study
    observed = list(range(8))
    by_hand = np.mean([rewards[i] * 0.5 / decisions[i].propensity for i in observed])   # uniform target, K = 2
    table = pd.DataFrame({"x0": XS[observed, 0], "x1": XS[observed, 1], "action": [decisions[i].action for i in observed],
                          "reward": rewards[observed], "propensity": [decisions[i].propensity for i in observed]})
    table.to_csv(tmp_path / "table.csv", index=False)
    from_table = off_policy_value(load_table(tmp_path / "table.csv", num_actions=2), "uniform", estimators=["ipw"])
    from_store = off_policy_value(load_store(folder / "study.db"), "uniform", estimators=["ipw"])
    assert from_store.table.estimate[0] == from_table.table.estimate[0]
    np.testing.assert_allclose(from_store.table.estimate[0], by_hand, rtol=1e-12)
    runner = CliRunner()
    for log in (str(folder / "study.db"), f"sqlite:///{folder / 'study.db'}"):
        out = tmp_path / f"{len(log)}.csv"
        result = runner.invoke(app, ["analyse", log, "--study", "lints", "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert "from 8 decisions with a reward (2 without one left out), 2 actions" in result.output
        assert pd.read_csv(out).set_index("estimator").estimate["ipw"] == pytest.approx(by_hand, rel=1e-12)
    result = runner.invoke(app, ["analyse", str(folder / "missing.db")])
    assert result.exit_code == 2 and "no such file" in result.output and "Traceback" not in result.output
