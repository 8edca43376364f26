import numpy as np

from structbandits.diagnostics import from_draws, summary
from structbandits.diagnostics.arviz_adapter import SUMMARY_COLUMNS


def test_from_draws_and_summary_on_known_draws():
    rng = np.random.default_rng(0)
    draws = {"theta": rng.normal(loc=[1.0, -2.0], scale=[0.5, 2.0], size=(4, 2000, 2))}
    data = from_draws(draws, dims={"theta": ["feature"]}, coords={"feature": ["a", "b"]})
    table = summary(data)
    assert list(table.columns) == SUMMARY_COLUMNS and len(table) == 2
    np.testing.assert_allclose(table["mean"], [1.0, -2.0], atol=0.1)
    np.testing.assert_allclose(table["sd"], [0.5, 2.0], rtol=0.05)
    assert (table["r_hat"] < 1.01).all() and (table["ess_bulk"] > 4000).all()  # independent draws


def test_summary_flags_chains_that_disagree():
    rng = np.random.default_rng(1)
    chains = rng.normal(size=(2, 500)) + np.array([[0.0], [5.0]])
    table = summary(from_draws({"mu": chains}))
    assert table.loc["mu", "r_hat"] > 1.5
