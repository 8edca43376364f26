"""Snapshots: bit-identical round trips, no pickle, clear errors for other models / versions /
corruption, and atomic writes."""

from __future__ import annotations

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from structbandits import ValidationError
from structbandits.agents import lin_ts, mets
from structbandits.study import OnlineAgent
from structbandits.persistence import load_snapshot, save_snapshot


@pytest.fixture(scope="module")
def policy():
    return lin_ts(jnp.zeros(2), jnp.eye(2), 0.5, num_actions=3)


def test_mets_agent_round_trip_is_bit_identical(tmp_path):
    num_arms, num_effects, d = 4, 2, 2
    rng = np.random.default_rng(0)
    policy = mets(rng.uniform(-1, 1, (num_arms, num_effects)), np.zeros((num_effects, d)), 3 * np.eye(num_effects * d),
                  np.eye(d), 1.0)
    agent = OnlineAgent(policy, key=jax.random.PRNGKey(5), log_dir=tmp_path / "log", name="mets")
    xs = rng.normal(size=(9, num_arms, d))  # per-arm contexts
    for x in xs[:5]:
        agent.select(x)
    agent.observe([3, 0, 1], [1.0, -0.5, 0.25])
    agent.save(tmp_path / "agent.npz")
    # Two live agents on one store share its decision ids; to compare continuations, resume on a copy.
    agent.close()  # the last connection checkpoints SQLite's WAL into the file
    shutil.copy(tmp_path / "log" / "study.db", tmp_path / "copy.db")
    agent = OnlineAgent(policy, log_dir=tmp_path / "log", name="mets")  # reopened: the key is the study's
    resumed = OnlineAgent.load(tmp_path / "agent.npz", policy, name="mets", store=tmp_path / "copy.db")
    for got, want in zip(jax.tree.leaves(resumed.state), jax.tree.leaves(agent.state)):
        np.testing.assert_array_equal(got, want)
    assert resumed.pending == agent.pending
    agent.observe(4, 2.0)
    resumed.observe(4, 2.0)
    first = np.array([agent.select(x)[:4] for x in xs[5:]], dtype=float)   # id, action, propensity (NaN), version
    second = np.array([resumed.select(x)[:4] for x in xs[5:]], dtype=float)
    np.testing.assert_array_equal(first, second)


def test_other_model_sizes_or_hyperparameters_are_rejected(policy, tmp_path):
    agent = OnlineAgent(policy, key=0, log_dir=tmp_path / "log", name="lints", hyperparameters={"sigma0": 1.0})
    agent.select([1.0, 2.0])
    agent.save(tmp_path / "agent.npz")
    with pytest.raises(ValidationError, match="saved for model 'lints', got 'linucb'"):
        OnlineAgent.load(tmp_path / "agent.npz", policy, name="linucb")
    with pytest.raises(ValidationError, match=r"hyperparameters\['sigma0'\]: the snapshot was saved with 1.0, got 2.0"):
        OnlineAgent.load(tmp_path / "agent.npz", policy, name="lints", hyperparameters={"sigma0": 2.0})
    four_arms = lin_ts(jnp.zeros(2), jnp.eye(2), 0.5, num_actions=4)
    with pytest.raises(ValidationError, match=r"state leaf 0: expected shape \(4, 2, 2\).*got shape \(3, 2, 2\)"):
        OnlineAgent.load(tmp_path / "agent.npz", four_arms, name="lints")
    other_kind = mets(np.ones((3, 1)), np.zeros((1, 2)), np.eye(2), np.eye(2), 0.5)
    with pytest.raises(ValidationError, match="state: expected the structure"):
        OnlineAgent.load(tmp_path / "agent.npz", other_kind, name="lints")


def _rewrite(path, edit):
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    document = json.loads(str(arrays["__metadata__"][()]))
    edit(arrays, document)
    arrays["__metadata__"] = np.asarray(json.dumps(document))
    np.savez(path, **arrays)


def test_format_version_kind_corruption_and_pickle_are_rejected(tmp_path):
    path = tmp_path / "snap.npz"
    save_snapshot(path, {"x": np.arange(3.0)}, kind="test", metadata={"a": 1})
    arrays, metadata = load_snapshot(path, kind="test")
    np.testing.assert_array_equal(arrays["x"], np.arange(3.0))
    assert metadata == {"a": 1}
    with pytest.raises(ValidationError, match="kind: expected a snapshot of 'other'"):
        load_snapshot(path, kind="other")
    _rewrite(path, lambda arrays, doc: doc.update(format_version=99))
    with pytest.raises(ValidationError, match="format_version: expected snapshot format 1, got 99"):
        load_snapshot(path, kind="test")
    save_snapshot(path, {"x": np.arange(3.0)}, kind="test")
    _rewrite(path, lambda arrays, doc: arrays.update(x=np.arange(3.0) + 1e-12))
    with pytest.raises(ValidationError, match="do not match their recorded hash"):
        load_snapshot(path, kind="test")
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, __metadata__=np.asarray("{}"), x=np.array([{"evil": 1}], dtype=object))
    with pytest.raises(ValidationError, match="could not be read"):
        load_snapshot(pickled, kind="test")
    with pytest.raises(ValidationError, match="expected a numeric array"):
        save_snapshot(path, {"x": np.array([object()])}, kind="test")
    (tmp_path / "garbage.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValidationError, match="could not be read"):
        load_snapshot(tmp_path / "garbage.npz", kind="test")
    with pytest.raises(ValidationError, match="no such file"):
        load_snapshot(tmp_path / "missing.npz", kind="test")
    with pytest.raises(ValidationError, match="metadata: expected JSON-serialisable"):
        save_snapshot(path, {"x": np.zeros(1)}, kind="test", metadata={"bad": float("nan")})


def test_a_failed_write_leaves_the_previous_snapshot(tmp_path, monkeypatch):
    path = tmp_path / "snap.npz"
    save_snapshot(path, {"x": np.zeros(2)}, kind="test")
    before = path.read_bytes()

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        save_snapshot(path, {"x": np.ones(2)}, kind="test")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snap.npz"]  # no temporary file left behind
