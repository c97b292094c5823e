"""Checks shared by the tests of compiled serving paths (model.classifier)."""

from __future__ import annotations

import numpy as np
import pytest

from model.classifier import GestureClassifier


def assert_serves_what_scikit_learn_answers(clf: GestureClassifier, batch: np.ndarray) -> None:
    """`clf`'s compiled batch path answers each row as `predict_proba` (scikit-learn's own numbers
    through the same head) does, and one row alone as in the batch."""
    expected = clf.predict_proba(batch)
    served = clf.predict_many(batch)
    for n, prediction in enumerate(served):
        best = int(np.argmax(expected[n]))
        assert prediction.gesture == clf.classes[best]
        assert prediction.confidence == pytest.approx(expected[n, best], rel=1e-4)
    one = clf.predict(batch[3])
    assert one.gesture == served[3].gesture and one.confidence == pytest.approx(served[3].confidence)
