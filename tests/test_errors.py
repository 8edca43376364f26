import numpy as np
import pytest
from hypothesis import given, strategies as st

from structbandits.errors import (
    ValidationError,
    check_finite,
    check_integer,
    check_positive,
    check_positive_definite,
    check_shape,
    check_simplex,
)


def test_validation_error_is_a_value_error():
    assert issubclass(ValidationError, ValueError)


def test_check_shape_names_argument_expected_and_received():
    with pytest.raises(ValidationError, match=r"contexts: expected shape \(any, 3\), got shape \(4, 2\)"):
        check_shape("contexts", np.zeros((4, 2)), (None, 3))
    assert check_shape("contexts", np.zeros((4, 3)), (None, 3)).shape == (4, 3)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_check_finite_reports_position(bad):
    values = np.array([1.0, 2.0, bad])
    with pytest.raises(ValidationError, match=r"rewards: expected finite values, got .* at index \(2,\)"):
        check_finite("rewards", values)


def test_check_finite_rejects_non_numbers():
    with pytest.raises(ValidationError, match="rewards: expected numbers"):
        check_finite("rewards", ["a", "b"])


def test_check_positive():
    with pytest.raises(ValidationError, match=r"noise_scale: expected values > 0, got -1.0"):
        check_positive("noise_scale", -1.0)
    with pytest.raises(ValidationError, match=r"budget: expected values >= 0"):
        check_positive("budget", [1.0, -2.0], allow_zero=True)
    assert check_positive("budget", 0.0, allow_zero=True) == 0.0


def test_check_integer():
    assert check_integer("horizon", 5.0) == 5
    for bad in (True, 2.5, "3"):
        with pytest.raises(ValidationError, match="horizon: expected an integer"):
            check_integer("horizon", bad)
    with pytest.raises(ValidationError, match="horizon: expected an integer >= 1, got 0"):
        check_integer("horizon", 0, minimum=1)
    with pytest.raises(ValidationError, match="budget: expected an integer <= 3, got 4"):
        check_integer("budget", 4, maximum=3)


def test_check_simplex():
    check_simplex("probs", [[0.2, 0.8], [0.5, 0.5]])
    with pytest.raises(ValidationError, match=r"probs: expected probabilities summing to 1 .* got a sum of 0.9 at index \(1,\)"):
        check_simplex("probs", [[0.2, 0.8], [0.5, 0.4]])
    with pytest.raises(ValidationError, match=r"probs: expected probabilities in \[0, 1\]"):
        check_simplex("probs", [1.5, -0.5])


@given(st.lists(st.floats(0.01, 10.0), min_size=2, max_size=6))
def test_check_simplex_accepts_any_normalised_vector(weights):
    probs = np.asarray(weights) / np.sum(weights)
    np.testing.assert_allclose(check_simplex("probs", probs), probs)


def test_check_positive_definite():
    check_positive_definite("cov", np.eye(3))
    with pytest.raises(ValidationError, match="cov: expected a square matrix"):
        check_positive_definite("cov", np.zeros((2, 3)))
    with pytest.raises(ValidationError, match="cov: expected a symmetric matrix"):
        check_positive_definite("cov", np.array([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(ValidationError, match="cov: expected a positive-definite matrix, got one with smallest eigenvalue -1"):
        check_positive_definite("cov", np.diag([1.0, -1.0]))
