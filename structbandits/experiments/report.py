"""A self-contained HTML report of any results folder the toolkit writes.

    structbandits report RESULTS_DIR      ->  RESULTS_DIR/report.html

The report reads what the folder holds: the run record (``config.json`` of ``run``/``demo``,
``sweep.json`` of a sweep, ``reproduction.json`` of a reproduction) for the config, the seeds, the
wall time and the library versions; every ``*summary*.csv`` as a table; every PNG embedded as a
base64 data URI (so the one file can be mailed or archived); for a sweep, a "Decision sensitivity"
section (``decision_sensitivity.csv`` and the ``decisions_<key>.png`` plots); and links to the files.

Tables are for reading: column headers are words ("final cumulative regret (s.e.)", the CSV's column
names in each header's tooltip), a mean and its ``*_se`` column share one cell ("832.1 (27)"), and a
table wider than the page scrolls inside its own box. The description line states the run's own size:
where ``--seeds``/``--horizon``/``--quick`` changed it, the description's default counts are replaced
by the run's and the defaults are named beside it.
"""

from __future__ import annotations

import base64
import html
import json
import re
import tomllib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from structbandits.errors import ValidationError

__all__ = ["RECORDS", "render_report"]

RECORDS = ("sweep.json", "reproduction.json", "config.json")
_MAX_ROWS = 400
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } .meta { color: #666; }
.table-wrap { overflow-x: auto; max-width: 100%; margin: 0.5em 0 1.5em; }
table { border-collapse: collapse; font-size: 0.8em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; }
th { background: #f2f2f2; font-weight: 600; vertical-align: bottom; max-width: 11em; }
td { white-space: nowrap; } td:first-child, th:first-child { text-align: left; }
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


_WORDS = {"wall_s": "wall time (s)", "gini_seed_mean": "Gini (mean over seeds)",
          "max_tv_value": "value at the max TV distance"}
_TOKENS = {"tv": "TV", "gini": "Gini", "se": "s.e."}


def column_words(name: str) -> str:
    """A CSV column name as a table header: ``final_cumulative_regret`` -> "final cumulative regret".
    Dotted config keys (``agents.lints.sigma0``) are left as they are: they are what ``--set`` takes."""
    if name in _WORDS:
        return _WORDS[name]
    if "." in name:
        return name
    return " ".join(_TOKENS.get(token, token) for token in name.split("_") if token)


def _cell(value: Any, digits: int = 4) -> str:
    """One table cell's text: floats to ``digits`` significant digits, missing values empty."""
    if value is None or (pd.api.types.is_scalar(value) and not isinstance(value, str) and pd.isna(value)):
        return ""
    if isinstance(value, float):  # numpy's float64 too
        return f"{value:.{digits}g}"
    return html.escape(str(value))


def _table(frame: pd.DataFrame) -> str:
    """``frame`` as an HTML table in a box that scrolls sideways: headers in words (the CSV column names
    as tooltips), each ``X`` with an ``X_se`` column merged into one "X (s.e.)" column, at most
    ``_MAX_ROWS`` rows."""
    note = ""
    if len(frame) > _MAX_ROWS:
        note = f"<p class='meta'>First {_MAX_ROWS} of {len(frame)} rows.</p>"
        frame = frame.head(_MAX_ROWS)
    columns = [str(column) for column in frame.columns]
    merged = {column for column in columns if f"{column}_se" in columns}
    shown = [column for column in columns if not (column.endswith("_se") and column[:-3] in merged)]
    header = "".join(
        f"<th title=\"{html.escape(column + (f', {column}_se' if column in merged else ''))}\">"
        f"{html.escape(column_words(column) + (' (s.e.)' if column in merged else ''))}</th>" for column in shown)
    rows = []
    for record in frame.astype(object).to_dict("records"):
        cells = []
        for column in shown:
            text = _cell(record[column])
            if column in merged and text and _cell(record[f"{column}_se"]):
                text += f" ({_cell(record[f'{column}_se'], 2)})"
            cells.append(f"<td>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f"<div class=\"table-wrap\"><table><thead><tr>{header}</tr></thead><tbody>"
            + "".join(rows) + "</tbody></table></div>" + note)


def _link(name: str) -> str:
    """A link to a file of the results folder (relative, so it works wherever the folder is moved)."""
    return f"<a href=\"{html.escape(name)}\">{html.escape(name)}</a>"


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
        grid = record["sweep"].get("grid", {})
        facts.update({"root seed": base.get("seed", 0), "seeds per cell": grid.get("seeds", base.get("seeds")),
                      "horizon": grid.get("horizon", base.get("horizon")), "cells": len(record.get("cells", [])),
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
            f"<figcaption>{_link(path.name)}</figcaption></figure>")


def _size(records: dict[str, dict[str, Any]]) -> tuple[str | None, int | None, int | None, bool]:
    """(name, seeds, horizon, quick) of the run the folder holds, as it ran."""
    if "reproduction.json" in records:
        record = records["reproduction.json"]
        return record.get("reproduction"), record.get("seeds"), record.get("horizon"), bool(record.get("quick"))
    if "sweep.json" in records:
        base = records["sweep.json"]["sweep"]["base"]
        return base.get("name"), base.get("seeds"), base.get("horizon"), False
    config = records.get("config.json", {}).get("config", {})
    return config.get("name"), config.get("seeds"), config.get("horizon"), False


def _default_size(records: dict[str, dict[str, Any]], description: str) -> tuple[int | None, int | None]:
    """The default (seeds, horizon): a reproduction's full size (its registry entry), else the built-in
    config's (or sweep's) own TOML where it has this description; (None, None) when unknown (a user's
    config: its description is kept as written)."""
    if "reproduction.json" in records:
        from structbandits.experiments.reproductions import REPRODUCTIONS

        entry = REPRODUCTIONS.get(records["reproduction.json"].get("reproduction"))
        return (entry.default_seeds, entry.default_horizon) if entry is not None else (None, None)
    from structbandits.experiments.catalog import builtin_configs, builtin_sweeps

    config = (records.get("config.json", {}).get("config")
              or records.get("sweep.json", {}).get("sweep", {}).get("base", {}))
    for catalog in (builtin_configs(), builtin_sweeps()):
        if config.get("name") in catalog:
            shipped = tomllib.loads(catalog[config["name"]].read_text())
            if shipped.get("description") == description:
                return shipped.get("seeds"), shipped.get("horizon")
    return None, None


def _replace_count(text: str, default: int, actual: int, nouns: str) -> str:
    """``text`` with every "<default> <noun>" (``nouns``: alternatives such as "seeds|runs"; the number may
    have thousands separators) as "<actual> <noun>"; other numbers (150 when the default is 50) unchanged."""
    number = f"{default:,}".replace(",", ",?")  # 5000 or 5,000
    pattern = re.compile(rf"(?<![\d.,]){number}(?![\d.,]\d) ({nouns})\b")
    return pattern.sub(lambda match: f"{actual} {match.group(1)}", text)


def _description(records: dict[str, dict[str, Any]], description: str) -> str:
    """The description line, with its default seed and round counts replaced by the run's own, and a note
    of the run's size (and the default size, where this run's differs)."""
    _, seeds, horizon, quick = _size(records)
    default_seeds, default_horizon = _default_size(records, description)
    text, changed = description, []
    for default, actual, words in ((default_seeds, seeds, "seeds|runs"), (default_horizon, horizon, "rounds")):
        if default is None or actual is None or default == actual:
            continue
        text = _replace_count(text, default, actual, words)
        changed.append(f"{default} {words.split('|')[0]}")
    size = ", ".join(part for part in (f"{seeds} seed{'s' if seeds != 1 else ''}" if seeds is not None else "",
                                      f"{horizon} rounds" if horizon is not None else "") if part)
    note = ""
    if size:
        note = f"<p class='meta'>This run: {html.escape(size)}" + (" (--quick)" if quick else "")
        note += (f"; by default {html.escape(', '.join(changed))}" if changed else "") + ".</p>"
    return (f"<p>{html.escape(text)}</p>" if text else "") + note


DECISIONS_CSV = "decision_sensitivity.csv"
_DECISION_SUMMARY = ["key", "env", "agent", "reference", "max_tv_distance", "max_tv_value",
                     "final_cumulative_regret_range", "window_propensity_range", "note"]
_DECISION_VALUES = ["key", "env", "agent", "value", "cells", "seeds", "round", "top_action", "top_share",
                    "tv_distance", "tv_distance_se", "tv_pairs", "window_propensity", "window_propensity_se",
                    "final_cumulative_regret", "final_cumulative_regret_se", "note"]


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
            "with each grid key: the total-variation distance of each simulation's action shares from those of "
            "the same seed (same ground truth) and the same other keys' values at the key's reference value (the "
            "middle of its grid list), averaged over seeds; the mean propensity of the chosen actions (empty "
            "where the agent reports none) and the final cumulative regret over the other keys' values and the "
            "seeds; each with its standard error over seeds. The top action and its share pool the seeds, whose "
            "truths differ: a description, not a comparison. The ranges are max − min of the means across the "
            "key's values. Full table, with the pooled action shares: "
            f"{_link(DECISIONS_CSV)}. For the posterior-level check (ArviZ power-scaling of the prior and the "
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
            _description(records, str(description or "")),
            f"<p class='meta'>Results folder: {html.escape(str(folder.resolve()))}"
            + (f" · run {html.escape(created)}" if created else "")
            + f" · report {datetime.now(timezone.utc).isoformat(timespec='seconds')}</p>"]
    facts = _run_facts(records)
    if facts:
        body.append("<h2>Run</h2>" + _mapping_table(facts, ("setting", "value")))
    for path in tables:
        body.append(f"<h2>{html.escape(path.name)}</h2>" + _table(pd.read_csv(path))
                    + f"<p class='meta'>Full precision: {_link(path.name)}</p>")
    body.extend(f"<h2>{html.escape(path.stem)}</h2>" + _figure(path) for path in plots)
    body.append(_decision_section(folder, records, decision_plots))
    body.extend(_config_sections(records))
    if versions:
        body.append("<h2>Library versions</h2>" + _mapping_table(versions, ("library", "version")))
    others = sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix not in (".png",) and p.name != "report.html")
    if others:
        body.append("<h2>Files</h2><ul>" + "".join(f"<li>{_link(name)}</li>" for name in others) + "</ul>")
    document = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{html.escape(str(title))}</title><style>{_STYLE}</style></head>\n<body>\n"
                + "\n".join(part for part in body if part) + "\n</body></html>\n")
    path = folder / "report.html"
    path.write_text(document, encoding="utf-8")
    return path
