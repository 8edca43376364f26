"""Latency and throughput of ``OnlineAgent`` on its decision store (SQLite by default, any SQLAlchemy URL).

What it measures
----------------
A clipped two-arm LinTS (exact propensities, d = 2) behind ``OnlineAgent``; each step is one
``select(context)`` (one transaction holding the study's write lock: catch up, act, insert) and one
``observe(decision_id, reward)`` (one transaction) of the previous decision, as a study's worker does.

* one process: p50 / p99 latency of ``select`` and of ``observe`` over ``--steps`` steps, after a
  warm-up step (compilation excluded);
* ``--processes`` processes on one study at once (``subprocess``, each its own interpreter): steps per
  second over all of them, from the moment all are compiled and released together.

Every commit is durable (SQLite: WAL with ``synchronous=FULL``), so latency is bound by the disk's
fsync. The numbers depend on the disk and on how busy the machine is; it prints the load average.

Run
---
    .venv/bin/python benchmarks/bench_store.py [--steps 200 --processes 4 --store /tmp/bench.db]
    .venv/bin/python benchmarks/bench_store.py --store postgresql+psycopg://user@localhost/db
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

WORKER = r'''
import os, sys, time
import numpy as np
import jax.numpy as jnp
import structbandits
structbandits.configure()
from structbandits.agents import clipped, lin_ts, lin_ts_two_arm_probabilities
from structbandits.study import OnlineAgent

store, study, steps, go, seed, report = sys.argv[1:7]
policy = clipped(lin_ts(jnp.zeros(2), jnp.eye(2), 0.5, num_actions=2), num_actions=2, p_min=0.1, p_max=0.9,
                 probabilities=lin_ts_two_arm_probabilities)
agent = OnlineAgent(policy, key=0, store=store, name="lints", study=study)
rng = np.random.default_rng(int(seed))
previous = None
select_times, observe_times = [], []


def step():
    global previous
    x = rng.normal(size=2)
    start = time.perf_counter()
    decision = agent.select(x)
    select_times.append(time.perf_counter() - start)
    if previous is not None:
        start = time.perf_counter()
        agent.observe(*previous)
        observe_times.append(time.perf_counter() - start)
    previous = (decision.decision_id, float(x[0] if decision.action else 0.5 * x[1]))


step()
select_times.clear(); observe_times.clear()
open(report + ".ready", "w").close()
while go != "-" and not os.path.exists(go):
    time.sleep(0.002)
start = time.perf_counter()
for _ in range(int(steps)):
    step()
elapsed = time.perf_counter() - start
np.savez(report, select=np.asarray(select_times), observe=np.asarray(observe_times), elapsed=elapsed)
'''


def run(store: str, study: str, steps: int, processes: int, folder: Path) -> tuple[float, list[Path]]:
    script = folder / "worker.py"
    script.write_text(WORKER)
    go = folder / f"go-{study}"
    reports = [folder / f"{study}-{i}" for i in range(processes)]
    children = [subprocess.Popen([sys.executable, str(script), store, study, str(steps), str(go), str(i), str(report)],
                                 env={**os.environ, "JAX_PLATFORMS": "cpu"}) for i, report in enumerate(reports)]
    while not all(Path(str(report) + ".ready").exists() for report in reports):
        if any(child.poll() not in (None, 0) for child in children):
            raise SystemExit("a worker failed")
        time.sleep(0.01)
    start = time.perf_counter()
    go.write_text("")
    for child in children:
        if child.wait() != 0:
            raise SystemExit("a worker failed")
    return time.perf_counter() - start, [Path(str(report) + ".npz") for report in reports]


def main() -> None:
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--store", default=None, help="an SQLite file or an SQLAlchemy URL (default: a temporary file)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-store-"))
    store = args.store or str(folder / "study.db")
    print(f"store {store}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    _, (report,) = run(store, f"single-{uuid.uuid4().hex[:6]}", args.steps, 1, folder)
    with np.load(report) as single:
        for name in ("select", "observe"):
            times = single[name] * 1000
            print(f"one process, {name:7s}: p50 {np.percentile(times, 50):6.2f} ms  p99 {np.percentile(times, 99):6.2f} ms"
                  f"  ({len(times)} calls)")
        print(f"one process: {args.steps / float(single['elapsed']):.1f} steps/s")
    wall, reports = run(store, f"crowd-{uuid.uuid4().hex[:6]}", args.steps, args.processes, folder)
    selects = np.concatenate([np.load(report)["select"] for report in reports]) * 1000
    print(f"{args.processes} processes: {args.processes * args.steps / wall:.1f} steps/s in all; select p50 "
          f"{np.percentile(selects, 50):.2f} ms, p99 {np.percentile(selects, 99):.2f} ms")


if __name__ == "__main__":
    main()
