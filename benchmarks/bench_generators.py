"""Messages per second of the SmolLM2-135M generators (extra ``llm``), one thread.

What it measures
----------------
For each backend that is installed (``TransformersGenerator``: torch CPU + transformers + gguf;
``LlamaCppGenerator``: llama-cpp-python), the wall time of generating ``--messages`` messages with
the seed's settings (60 new tokens, temperature 0.6, top-p 0.9) on ``--threads`` CPU threads:

* batch 1: one message at a time, the tasks of one (prompt, context) cell in a row (llama.cpp reuses
  the cell's prompt from its cache; the transformers generator reuses the system turn only);
* batch B (transformers only; ``--batch``, default 32): B tasks per ``generate_batch`` call, a cell's
  samples together (the builder's order), and the same with the meta-talk stop rule
  (``envs.meta_talk``: a rejected message leaves the batch when the rule fires).

One warm-up message is generated first and not counted. The 1-minute load average before and after
each row is printed: the machine these numbers were taken on was shared.

Run
---
    HF_HUB_OFFLINE=1 python benchmarks/bench_generators.py [--messages 64 --batch 32 --threads 1]
"""

from __future__ import annotations

import argparse
import os
import time

import jax

from structbandits.envs.generators import LlamaCppGenerator, TransformersGenerator
from structbandits.envs.meta_talk import meta_talk


def _tasks(n: int) -> list:
    """n tasks over the K = 5 experiments' prompts, cells of 8 samples each."""
    prompts = ["optimism-high", "optimism-low", "formality-high", "severity-high", "encouragement-low"]
    cells = [(p, (loc, steps)) for p in prompts for loc in ("home", "work", "other") for steps in (1, 2, 3, 4)]
    return [(*cells[i // 8 % len(cells)], jax.random.PRNGKey(1000 + i)) for i in range(n)]


def _row(name: str, run, n: int) -> None:
    load = os.getloadavg()[0]
    start = time.perf_counter()
    texts = run()
    seconds = time.perf_counter() - start
    accepted = sum(meta_talk(t) is None for t in texts)
    print(f"{name:<38} {n:>4} msgs {seconds:8.1f} s {n / seconds:7.3f} msg/s   accepted {accepted:>3}   "
          f"load {load:.1f} -> {os.getloadavg()[0]:.1f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    tasks = _tasks(args.messages)
    print(f"cpu count {os.cpu_count()}, threads {args.threads}")
    try:
        tf = TransformersGenerator(n_threads=args.threads)
    except ImportError as err:
        print(f"transformers backend: skipped ({err})")
    else:
        tf(*tasks[0])  # warm-up
        _row("transformers, batch 1", lambda: [tf(*t) for t in tasks], len(tasks))
        b = args.batch
        _row(f"transformers, batch {b}",
             lambda: [m for i in range(0, len(tasks), b) for m in tf.generate_batch(tasks[i:i + b])], len(tasks))
        _row(f"transformers, batch {b}, meta-talk stop",
             lambda: [m for i in range(0, len(tasks), b) for m in tf.generate_batch(tasks[i:i + b], stop=meta_talk)],
             len(tasks))
    try:
        lc = LlamaCppGenerator(n_threads=args.threads)
    except ImportError as err:
        print(f"llama-cpp backend: skipped ({err})")
    else:
        lc(*tasks[0])
        _row("llama-cpp, batch 1", lambda: [lc(*t) for t in tasks], len(tasks))


if __name__ == "__main__":
    main()
