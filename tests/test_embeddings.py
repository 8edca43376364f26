"""all-MiniLM-L6-v2 through sentence-transformers (extra ``structbandits[text]``): offline, deterministic, semantic.

Skipped, with the reason printed, when the extra is not installed.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sentence_transformers", reason="extra 'text' not installed: pip install 'structbandits[text]'")

from structbandits.structure.embeddings import embed_texts, load_sentence_model  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return load_sentence_model(n_threads=1)


def test_embeddings_are_offline_unit_vectors_and_semantic(model):
    texts = ["Take a short walk after lunch today.", "Go for a brief stroll once you have eaten lunch.",
             "The quarterly tax report is due on Friday."]
    x = embed_texts(texts, model)
    assert x.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(embed_texts(texts, model), x, atol=1e-6)
    assert x[0] @ x[1] > x[0] @ x[2] + 0.3  # paraphrases closer than unrelated text
