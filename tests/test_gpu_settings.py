"""GPU process settings: worker processes and the CLI run without JAX's GPU memory preallocation."""

import os

import pytest

from structbandits.cli import gpu_process_settings
from structbandits.experiments.executors import PREALLOCATE_VARIABLE, run_tasks, worker_environment


def test_worker_environment_sets_the_variable_only_while_open(monkeypatch):
    monkeypatch.delenv(PREALLOCATE_VARIABLE, raising=False)
    with worker_environment():
        assert os.environ[PREALLOCATE_VARIABLE] == "false"
    assert PREALLOCATE_VARIABLE not in os.environ


def test_worker_environment_keeps_a_value_the_user_set(monkeypatch):
    monkeypatch.setenv(PREALLOCATE_VARIABLE, "true")
    with worker_environment():
        assert os.environ[PREALLOCATE_VARIABLE] == "true"
    assert os.environ[PREALLOCATE_VARIABLE] == "true"


@pytest.mark.parametrize("preset", [None, "true"])
def test_spawned_workers_see_the_setting_and_this_process_does_not_keep_it(monkeypatch, preset):
    if preset is None:
        monkeypatch.delenv(PREALLOCATE_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(PREALLOCATE_VARIABLE, preset)
    seen = dict(run_tasks(os.getenv, [(PREALLOCATE_VARIABLE,)] * 2, executor="processes", workers=2))
    assert seen == {0: preset or "false", 1: preset or "false"}
    assert os.environ.get(PREALLOCATE_VARIABLE) == preset


def test_the_cli_turns_preallocation_off_unless_told_otherwise(monkeypatch):
    monkeypatch.delenv(PREALLOCATE_VARIABLE, raising=False)
    gpu_process_settings()
    assert os.environ[PREALLOCATE_VARIABLE] == "false"
    monkeypatch.setenv(PREALLOCATE_VARIABLE, "true")
    gpu_process_settings()
    assert os.environ[PREALLOCATE_VARIABLE] == "true"
