"""A self-contained HTML report of any results folder the toolkit writes.

    structbandits report RESULTS_DIR      ->  RESULTS_DIR/report.html

The report reads what the folder holds: the run record (``config.json`` of ``run``/``demo``,
``sweep.json`` of a sweep, ``reproduction.json`` of a reproduction) for the config, the seeds, the
wall time and the library versions; every ``*summary*.csv`` as a table; every PNG embedded as a
base64 data URI (so the one file can be mailed or archived); for a sweep, a "Decision sensitivity"
section (``decision_sensitivity.csv`` and the ``decisions_<key>.png`` plots); and a list of the other
files. It uses only the standard library and pandas' ``to_html``.
"""

from __future__ import annotations

import base64
import html
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from structbandits.errors import ValidationError

__all__ = ["RECORDS", "render_report"]

RECORDS = ("sweep.json", "reproduction.json", "config.json")
_MAX_ROWS = 400
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { margin-bottom: 0.2em; } .meta { color: #666; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f2f2f2; } td:first-child, th:first-child { text-align: left; }
pre { background: #f7f7f7; padding: 1em; overflow-x: auto; font-size: 0.85em; }
figure { margin: 1em 0 2em; } figcaption { color: #666; font-size: 0.9em; }
img { max-width: 100%; border: 1px solid #eee; }
"""


def _read_records(folder: Path) -> dict[str, dict[str, Any]]:
    records = {}
    for name in RECORDS:
        path = folder / name
        if path.exists():
            try:
                records[name] = json.loads(path.read_text())
            except json.JSONDecodeError as err:
                raise ValidationError(f"results_dir: {path} is not valid JSON: {err}") from None
    return records


def _table(frame: pd.DataFrame) -> str:
    note = ""
    if len(frame) > _MAX_ROWS:
        note = f"<p class='meta'>First {_MAX_ROWS} of {len(frame)} rows.</p>"
        frame = frame.head(_MAX_ROWS)
    return frame.to_html(index=False, border=0, na_rep="", float_format=lambda v: f"{v:.4g}") + note


def _mapping_table(mapping: dict[str, Any], header: tuple[str, str]) -> str:
    frame = pd.DataFrame({header[0]: list(mapping), header[1]: [str(value) for value in mapping.values()]})
    return _table(frame)


def _run_facts(records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Seeds, size and wall time from whichever records the folder has."""
    facts: dict[str, Any] = {}
    if "reproduction.json" in records:
        record = records["reproduction.json"]
        facts.update({key: record.get(key) for key in ("reproduction", "quick", "seeds", "horizon")})
        facts["wall time (s)"] = record.get("wall_time_s")
    if "sweep.json" in records:
        record = records["sweep.json"]
        base = record["sweep"]["base"]
        facts.update({"root seed": base.get("seed", 0), "seeds per cell": base.get("seeds"),
                      "horizon": base.get("horizon"), "cells": len(record.get("cells", [])),
                      "wall time (s)": record.get("wall_time_s")})
    if "config.json" in records:
        record = records["config.json"]
        config = record.get("config", {})
        facts.setdefault("root seed", record.get("seed", config.get("seed")))
        facts.setdefault("seeds", config.get("seeds"))
        facts.setdefault("horizon", config.get("horizon"))
        facts.setdefault("wall time (s)", record.get("wall_time_s"))
    return {key: value for key, value in facts.items() if value is not None}


def _config_sections(records: dict[str, dict[str, Any]]) -> list[str]:
    parts = []
    if "sweep.json" in records:
        sweep = records["sweep.json"]["sweep"]
        grid = {key: ", ".join(map(str, values)) for key, values in sweep["grid"].items()}
        parts.append("<h2>Grid</h2>" + _mapping_table(grid, ("key", "values"))
                     + f"<p class='meta'>{sweep['checkpoints']} round checkpoints per simulation.</p>")
        parts.append("<h2>Base config</h2><pre>" + html.escape(json.dumps(sweep["base"], indent=2)) + "</pre>")
    if "config.json" in records:
        config = records["config.json"].get("config", {})
        parts.append("<h2>Config</h2><pre>" + html.escape(json.dumps(config, indent=2, default=str)) + "</pre>")
    return parts


def _figure(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    name = html.escape(path.name)
    return (f"<figure><img src=\"data:image/png;base64,{data}\" alt=\"{name}\">"
            f"<figcaption>{name}</figcaption></figure>")


DECISIONS_CSV = "decision_sensitivity.csv"
_DECISION_SUMMARY = ["key", "env", "agent", "reference", "max_tv_distance", "max_tv_value",
                     "final_cumulative_regret_range", "window_propensity_range"]
_DECISION_VALUES = ["key", "env", "agent", "value", "cells", "seeds", "round", "top_action", "top_share",
                    "tv_distance", "window_propensity", "window_propensity_se", "final_cumulative_regret",
                    "final_cumulative_regret_se"]


def _decision_section(folder: Path, records: dict[str, dict[str, Any]], plots: list[Path]) -> str:
    """The sweep's decision sensitivity: its tables and plots, or a note where the sweep has none."""
    path = folder / DECISIONS_CSV
    if not path.exists():
        if "sweep.json" not in records and not plots:
            return ""
        return ("<h2>Decision sensitivity</h2><p class='meta'>Not available: this sweep's results record no "
                "decisions (no window_propensity / action_counts columns, as written by an older version); "
                "re-run the sweep to see how the actions and their propensities move with each grid key.</p>"
                + "".join(_figure(plot) for plot in plots))
    table = pd.read_csv(path)
    text = ("<h2>Decision sensitivity</h2><p>How the decisions in each simulation's final checkpoint window move "
            "with each grid key, pooling the cells over the other keys' values and the seeds: the total-variation "
            "distance of the pooled action shares from those at the key's reference value (the middle of its grid "
            "list), the mean propensity of the chosen actions (empty where the agent reports none) and the final "
            "cumulative regret, with standard errors over seeds. The ranges are max − min of the means across the "
            "key's values. Full table, with the action shares: "
            f"<code>{DECISIONS_CSV}</code>. For the posterior-level check (ArviZ power-scaling of the prior and the "
            "likelihood of a NumPyro program given data) see "
            "<code>structbandits.diagnostics.sensitivity.power_scaling_sensitivity</code>.</p>")
    summary = table[table["row"] == "summary"][[c for c in _DECISION_SUMMARY if c in table.columns]]
    values = table[table["row"] == "value"][[c for c in _DECISION_VALUES if c in table.columns]]
    return (text + "<h3>Per key, environment and agent</h3>" + _table(summary)
            + "<h3>Per value</h3>" + _table(values) + "".join(_figure(plot) for plot in plots))


def render_report(results_dir: str | Path, *, title: str | None = None) -> Path:
    """Write ``report.html`` into ``results_dir`` and return its path.

    Parameters
    ----------
    results_dir : a folder written by ``run``/``demo``, ``sweep`` or ``reproduce`` (or any folder
        holding summary CSVs and PNG plots).
    title : the report's heading (default: the experiment, sweep or reproduction name, else the folder name).
    """
    folder = Path(results_dir)
    if not folder.is_dir():
        raise ValidationError(f"results_dir: expected a results folder, got {str(results_dir)!r}")
    records = _read_records(folder)
    tables = sorted(path for path in folder.glob("*.csv") if "summary" in path.name)
    plots = sorted(folder.glob("*.png"))
    decision_plots = [plot for plot in plots if plot.name.startswith("decisions_")]
    plots = [plot for plot in plots if plot not in decision_plots]
    if not (records or tables or plots or decision_plots):
        raise ValidationError(f"results_dir: expected a results folder (with {', '.join(RECORDS)}, summary CSVs "
                              f"or PNG plots), got {str(folder)!r} with none")
    if title is None:
        config = records.get("config.json", {}).get("config", {})
        sweep = records.get("sweep.json", {}).get("sweep", {}).get("base", {})
        title = (records.get("reproduction.json", {}).get("reproduction") or sweep.get("name")
                 or config.get("name") or folder.name)
        title = f"{title} (sweep)" if sweep else title
    description = (records.get("config.json", {}).get("config", {}).get("description")
                   or records.get("sweep.json", {}).get("sweep", {}).get("base", {}).get("description")
                   or records.get("reproduction.json", {}).get("description", ""))
    versions = next((record["versions"] for record in records.values() if "versions" in record), {})
    created = next((record["created"] for record in records.values() if "created" in record), "")
    body = [f"<h1>{html.escape(str(title))}</h1>",
            f"<p>{html.escape(str(description))}</p>" if description else "",
            f"<p class='meta'>Results folder: {html.escape(str(folder.resolve()))}"
            + (f" · run {html.escape(created)}" if created else "")
            + f" · report {datetime.now(timezone.utc).isoformat(timespec='seconds')}</p>"]
    facts = _run_facts(records)
    if facts:
        body.append("<h2>Run</h2>" + _mapping_table(facts, ("setting", "value")))
    for path in tables:
        body.append(f"<h2>{html.escape(path.name)}</h2>" + _table(pd.read_csv(path)))
    body.extend(f"<h2>{html.escape(path.stem)}</h2>" + _figure(path) for path in plots)
    body.append(_decision_section(folder, records, decision_plots))
    body.extend(_config_sections(records))
    if versions:
        body.append("<h2>Library versions</h2>" + _mapping_table(versions, ("library", "version")))
    others = sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix not in (".png",) and p.name != "report.html")
    if others:
        body.append("<h2>Files</h2><ul>" + "".join(f"<li>{html.escape(name)}</li>" for name in others) + "</ul>")
    document = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{html.escape(str(title))}</title><style>{_STYLE}</style></head>\n<body>\n"
                + "\n".join(part for part in body if part) + "\n</body></html>\n")
    path = folder / "report.html"
    path.write_text(document, encoding="utf-8")
    return path
