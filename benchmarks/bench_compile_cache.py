"""Cold vs warm runs with JAX's persistent compilation cache (``structbandits.configure``).

Each case runs a CLI command three times in fresh processes: with the cache off, then cold (an empty
cache folder) and warm (the same folder again). Inside each process JAX's monitoring events give the
seconds spent tracing, lowering and compiling (``/jax/core/compile/*_duration``; a cache hit skips the
backend compile), so the compile share of the wall time is measured, not guessed.

    .venv/bin/python benchmarks/bench_compile_cache.py                 # demo, run mets-linear, reproduce ermab-fig3
    .venv/bin/python benchmarks/bench_compile_cache.py --cases demo
    .venv/bin/python benchmarks/bench_compile_cache.py --cases mets-linear-quick drift-quick   # more reproductions

Prints one row per (case, run): wall seconds, compile seconds (trace + lower + backend), cache hits
and misses. Target of issue 20: warm compile seconds < 20% of cold.

    .venv/bin/python benchmarks/bench_compile_cache.py --cpu           # also the CPU seconds of those events
    .venv/bin/python benchmarks/bench_compile_cache.py --by-program    # and each warm run's programs

``--cpu`` adds a column with the process's CPU seconds inside the same events (``time.process_time``;
on a machine shared with other jobs it varies less than their wall seconds, since waiting for a core
is not counted). ``--by-program`` prints, after each warm run, a table of the events by function name:
traces (a ``jit`` function's name), lowerings and backend compiles or cache loads (``jit(name)``), with
their counts and seconds, the largest first. Both options leave the default table as it is.
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
    # More reproductions (not run by default): --quick sizes, so each case's three runs take a few minutes.
    "mets-linear-quick": ["reproduce", "mets-linear", "--quick", "--no-progress"],
    "mets-movielens-quick": ["reproduce", "mets-movielens", "--quick", "--no-progress"],
    "gambitts-illustrative-quick": ["reproduce", "gambitts-illustrative", "--quick", "--no-progress"],
    "ermab-fig4-quick": ["reproduce", "ermab-fig4", "--quick", "--no-progress"],
    "drift-quick": ["reproduce", "drift", "--quick", "--no-progress"],
}

# Runs the CLI in this process with listeners on JAX's compile events; prints them as JSON at exit.
WRAPPER = """
import atexit, json, sys, time
from jax import monitoring
totals = {"compile_s": 0.0, "backend_s": 0.0, "hits": 0, "misses": 0, "cpu_s": 0.0, "programs": {}}
starts = {}
PHASES = {"jaxpr_trace_duration": "trace", "jaxpr_to_mlir_module_duration": "lower",
          "backend_compile_duration": "backend"}
def on_start(name, value, fun_name=None, **kw):
    if name.startswith("/jax/core/compile/"):
        starts.setdefault((name, fun_name), []).append(time.process_time())
def on_duration(name, seconds, fun_name=None, **kw):
    if name.startswith("/jax/core/compile/"):
        totals["compile_s"] += seconds
        if name.endswith("backend_compile_duration"):
            totals["backend_s"] += seconds
        started = starts.get((name, fun_name))
        cpu = time.process_time() - started.pop() if started else 0.0
        totals["cpu_s"] += cpu
        phase = PHASES.get(name.rsplit("/", 1)[1])
        if phase is not None:
            row = totals["programs"].setdefault(str(fun_name), {})
            row[phase] = row.get(phase, 0) + 1
            row[phase + "_s"] = row.get(phase + "_s", 0.0) + seconds
monitoring.register_scalar_listener(on_start)
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
    parser.add_argument("--cases", nargs="+", default=["demo", "mets-linear", "ermab-fig3"], choices=list(CASES))
    parser.add_argument("--cpu", action="store_true", help="add the CPU seconds of the compile events")
    parser.add_argument("--by-program", action="store_true", help="print each warm run's events by program")
    args = parser.parse_args()
    print(f"load {os.getloadavg()[0]:.2f}; cores {os.cpu_count()}")
    print(f"{'case':<28}{'run':<7}{'wall s':>9}{'compile s':>11}{'backend s':>11}{'hits':>7}{'misses':>8}"
          + (f"{'cpu s':>9}" if args.cpu else ""))
    with tempfile.TemporaryDirectory() as scratch:
        for case in args.cases:
            cache = Path(scratch) / f"cache-{case}"
            rows = {}
            for run in ("off", "cold", "warm"):
                rows[run] = row = run_once(CASES[case], "off" if run == "off" else str(cache), Path(scratch) / f"{case}-{run}")
                print(f"{case:<28}{run:<7}{row['wall_s']:>9.1f}{row['compile_s']:>11.1f}{row['backend_s']:>11.1f}"
                      f"{row['hits']:>7}{row['misses']:>8}" + (f"{row['cpu_s']:>9.1f}" if args.cpu else ""),
                      flush=True)
                if args.by_program and run == "warm":
                    print_programs(row["programs"])
            cold, warm = rows["cold"], rows["warm"]
            print(f"  warm ÷ cold compile seconds: {warm['compile_s'] / cold['compile_s']:.0%}"
                  + (f" (CPU {warm['cpu_s'] / cold['cpu_s']:.0%})" if args.cpu else ""), flush=True)


def print_programs(programs: dict, top: int = 25) -> None:
    """The warm run's compile events by function name, the most seconds first (``top`` rows, then a total)."""
    def seconds(row):
        return sum(row.get(phase + "_s", 0.0) for phase in ("trace", "lower", "backend"))

    print(f"  {'program':<36}{'traces':>7}{'trace s':>9}{'lowers':>7}{'lower s':>9}{'loads':>7}{'load s':>8}")
    ranked = sorted(programs.items(), key=lambda item: -seconds(item[1]))
    for name, row in ranked[:top]:
        print(f"  {name[:36]:<36}{row.get('trace', 0):>7}{row.get('trace_s', 0.0):>9.2f}{row.get('lower', 0):>7}"
              f"{row.get('lower_s', 0.0):>9.2f}{row.get('backend', 0):>7}{row.get('backend_s', 0.0):>8.2f}")
    rest = [row for _, row in ranked[top:]]
    if rest:
        total = {key: sum(row.get(key, 0) for row in rest) for key in
                 ("trace", "trace_s", "lower", "lower_s", "backend", "backend_s")}
        print(f"  {f'({len(rest)} more)':<36}{total['trace']:>7}{total['trace_s']:>9.2f}{total['lower']:>7}"
              f"{total['lower_s']:>9.2f}{total['backend']:>7}{total['backend_s']:>8.2f}")
    print(f"  programs compiled or loaded {sum(r.get('backend', 0) for r in programs.values())}, traces "
          f"{sum(r.get('trace', 0) for r in programs.values())} (a trace inside another's is counted in both)",
          flush=True)


if __name__ == "__main__":
    main()
