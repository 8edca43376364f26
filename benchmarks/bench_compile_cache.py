"""Cold vs warm runs with JAX's persistent compilation cache (``structbandits.configure``).

Each case runs a CLI command three times in fresh processes: with the cache off, then cold (an empty
cache folder) and warm (the same folder again). Inside each process JAX's monitoring events give the
seconds spent tracing, lowering and compiling (``/jax/core/compile/*_duration``; a cache hit skips the
backend compile), so the compile share of the wall time is measured, not guessed.

    .venv/bin/python benchmarks/bench_compile_cache.py                 # demo, run mets-linear, reproduce ermab-fig3
    .venv/bin/python benchmarks/bench_compile_cache.py --cases demo

Prints one row per (case, run): wall seconds, compile seconds (trace + lower + backend), cache hits
and misses. Target of issue 20: warm compile seconds < 20% of cold.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = {
    "demo": ["demo", "--no-progress"],
    "mets-linear": ["run", "mets-linear", "--no-progress"],
    "ermab-fig3": ["reproduce", "ermab-fig3", "--no-progress"],
}

# Runs the CLI in this process with listeners on JAX's compile events; prints them as JSON at exit.
WRAPPER = """
import atexit, json, sys
from jax import monitoring
totals = {"compile_s": 0.0, "backend_s": 0.0, "hits": 0, "misses": 0}
def on_duration(name, seconds, **kw):
    if name.startswith("/jax/core/compile/"):
        totals["compile_s"] += seconds
        if name.endswith("backend_compile_duration"):
            totals["backend_s"] += seconds
def on_event(name, **kw):
    if name.endswith("cache_hits"):
        totals["hits"] += 1
    elif name.endswith("cache_misses"):
        totals["misses"] += 1
monitoring.register_event_duration_secs_listener(on_duration)
monitoring.register_event_listener(on_event)
atexit.register(lambda: print("COMPILE " + json.dumps(totals), file=sys.stderr))
from structbandits.cli import main
sys.argv = ["structbandits"] + sys.argv[1:]
main()
"""


def run_once(args: list[str], cache: str, out: Path) -> dict:
    env = {**os.environ, "STRUCTBANDITS_COMPILATION_CACHE": cache}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", WRAPPER, *args, "--out", str(out)], env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    line = next(line for line in done.stderr.splitlines() if line.startswith("COMPILE "))
    return {"wall_s": wall, **json.loads(line[len("COMPILE "):])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    args = parser.parse_args()
    print(f"load {os.getloadavg()[0]:.2f}; cores {os.cpu_count()}")
    print(f"{'case':<14}{'run':<7}{'wall s':>9}{'compile s':>11}{'backend s':>11}{'hits':>7}{'misses':>8}")
    with tempfile.TemporaryDirectory() as scratch:
        for case in args.cases:
            cache = Path(scratch) / f"cache-{case}"
            for run in ("off", "cold", "warm"):
                row = run_once(CASES[case], "off" if run == "off" else str(cache), Path(scratch) / f"{case}-{run}")
                print(f"{case:<14}{run:<7}{row['wall_s']:>9.1f}{row['compile_s']:>11.1f}{row['backend_s']:>11.1f}"
                      f"{row['hits']:>7}{row['misses']:>8}", flush=True)


if __name__ == "__main__":
    main()
