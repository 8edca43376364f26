"""Latency and throughput of the decision service (``structbandits serve``) on loopback.

What it measures
----------------
A real server (``python -m structbandits serve``, uvicorn, ``--workers`` processes) serving a study of a
two-arm LinTS clipped to [0.1, 0.9] (exact propensities, d = 2) on an SQLite store, started on a free
loopback port and waited for (``/health``). At each concurrency level C (default 1, 4 and 16) C client
threads (one ``httpx.Client`` each, keep-alive) run decision + outcome pairs: ``POST /decisions`` with a
random context, then ``POST /outcomes`` with its reward, until ``--pairs`` pairs are done or ``--seconds``
have passed. Reported per level: p50 and p99 latency of each request (client side, so queueing behind
the agent's lock is included) and pairs per second over the level's wall time. Compilation is excluded
(the server compiles before it answers ``/health``; one warm-up pair runs first).

Every commit is durable (SQLite: WAL with ``synchronous=FULL``), so latency is bound by the disk's fsync
and by how busy the machine is; the load average is printed with the table.

Run
---
    .venv/bin/python benchmarks/bench_service.py [--pairs 200 --seconds 60 --levels 1,4,16 --workers 1]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

STUDY = """
name = "bench"
store = "bench.db"
key = 0
context_shape = [2]
token_env = "BENCH_SERVICE_TOKEN"

[policy]
kind = "lints"
num_actions = 2
num_features = 2
noise_scale = 0.5

[clipping]
p_min = 0.1
p_max = 0.9
"""
TOKEN = "bench-token"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(folder: Path, workers: int) -> tuple[subprocess.Popen, str, float]:
    (folder / "study.toml").write_text(STUDY)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "structbandits", "serve", str(folder / "study.toml"),
                               "--port", str(port), "--workers", str(workers)],
                              env={**os.environ, "BENCH_SERVICE_TOKEN": TOKEN}, stdout=subprocess.DEVNULL,
                              stderr=open(folder / "server.log", "w"))
    while True:
        if server.poll() is not None:
            raise SystemExit(f"the server exited:\n{(folder / 'server.log').read_text()[-3000:]}")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return server, base, time.perf_counter() - started
        except httpx.TransportError:
            time.sleep(0.1)
        if time.perf_counter() - started > 300:
            server.kill()
            raise SystemExit("the server did not answer /health within 300 s")


def run_level(base: str, clients: int, pairs: int, seconds: float) -> dict[str, float]:
    decide, observe, errors = [], [], []
    lock, done = threading.Lock(), [0]
    deadline = time.perf_counter() + seconds

    def client(seed: int) -> None:
        rng = np.random.default_rng(seed)
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120) as http:
            while time.perf_counter() < deadline:
                with lock:
                    if done[0] >= pairs:
                        return
                    done[0] += 1
                x = rng.normal(size=2)
                start = time.perf_counter()
                reply = http.post("/decisions", json={"context": x.tolist()})
                middle = time.perf_counter()
                if reply.status_code != 200:
                    errors.append(reply.text)
                    return
                body = reply.json()
                reward = float(x[0] if body["action"] else 0.5 * x[1])
                answer = http.post("/outcomes", json={"decision_id": body["decision_id"], "reward": reward})
                end = time.perf_counter()
                if answer.status_code != 200:
                    errors.append(answer.text)
                    return
                with lock:
                    decide.append(middle - start)
                    observe.append(end - middle)

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    if errors:
        raise SystemExit(f"requests failed: {errors[:3]}")
    decide_ms, observe_ms = 1000 * np.asarray(decide), 1000 * np.asarray(observe)
    return {"clients": clients, "pairs": len(decide), "wall_s": wall,
            "decide_p50": np.percentile(decide_ms, 50), "decide_p99": np.percentile(decide_ms, 99),
            "outcome_p50": np.percentile(observe_ms, 50), "outcome_p99": np.percentile(observe_ms, 99),
            "pairs_per_s": len(decide) / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=200, help="decision + outcome pairs per level")
    parser.add_argument("--seconds", type=float, default=60.0, help="at most this long per level")
    parser.add_argument("--levels", default="1,4,16", help="concurrent clients per level, comma-separated")
    parser.add_argument("--workers", type=int, default=1, help="server processes (uvicorn --workers)")
    parser.add_argument("--folder", type=Path, default=None, help="where the study file and store go (default: a "
                        "temporary folder)")
    args = parser.parse_args()
    folder = args.folder or Path(tempfile.mkdtemp(prefix="bench-service-"))
    folder.mkdir(parents=True, exist_ok=True)
    server, base, startup = start_server(folder, args.workers)
    try:
        run_level(base, 1, 1, 60.0)   # warm-up: the first request of each connection path
        rows = [run_level(base, int(level), args.pairs, args.seconds) for level in args.levels.split(",")]
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
    print(f"server: {args.workers} worker process(es), ready after {startup:.1f} s; store {folder / 'bench.db'}")
    print(f"{'clients':>7} {'pairs':>6} {'decide p50':>11} {'p99':>7} {'outcome p50':>12} {'p99':>7} {'pairs/s':>8}")
    for row in rows:
        print(f"{row['clients']:>7} {row['pairs']:>6} {row['decide_p50']:>9.1f}ms {row['decide_p99']:>5.1f}ms "
              f"{row['outcome_p50']:>10.1f}ms {row['outcome_p99']:>5.1f}ms {row['pairs_per_s']:>8.1f}")
    print("load average (1, 5, 15 min): " + ", ".join(f"{value:.2f}" for value in os.getloadavg())
          + f" on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
