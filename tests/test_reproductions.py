"""Every registered reproduction runs end to end at its quick size and leaves a complete results folder."""

import json
import re

import pytest

from structbandits.experiments.reproductions import REPRODUCTIONS, run_reproduction


@pytest.mark.slow
@pytest.mark.parametrize("name", list(REPRODUCTIONS))
def test_every_reproduction_runs_quick(name, tmp_path):
    entry = REPRODUCTIONS[name]
    assert entry.quick_seeds <= 2 and (entry.quick_horizon or 0) <= 50  # quick means tiny
    outcome = run_reproduction(name, tmp_path, quick=True, progress=False)
    assert len(outcome.summary) > 0 and outcome.summary.notna().any().any()
    record = json.loads((tmp_path / "reproduction.json").read_text())
    assert record["reproduction"] == name and record["quick"] is True and record["seeds"] == entry.quick_seeds
    assert record["horizon"] == entry.quick_horizon and record["versions"]["jax"]
    document = (tmp_path / "report.html").read_text()
    assert f"<h1>{name}</h1>" in document and "<td>quick</td>" in document and "summary" in document
    images = re.findall(r'<img src="data:image/png;base64,', document)
    assert len(images) == len(list(tmp_path.glob("*.png"))) >= 1
