"""Issue 9, finding 6 through the Python API: a class removed from the config while labels use it."""
import warnings

import numpy as np
import pytest

from alworkbench import Project
from alworkbench.loop.oracle import Oracle


def test_finding6_session_with_labels_of_a_removed_class_warns_and_carries_on(tmp_path):
    p = Project.init(tmp_path / "p", "digits", query={"batch_size": 10})
    X = p.source.pixels.reshape(len(p.items), -1).astype("float32") / 16.0
    s = p.session(embeddings=X)
    Oracle(s).run(2)
    s.close()
    used = set(p.store.labels().values())
    gone = sorted(used)[0]
    p.config.classes = [c for c in p.config.classes if c != gone]
    p.config.save(p.config_path)
    p.close()
    p2 = Project.open(tmp_path / "p")
    with pytest.warns(UserWarning, match="alwb classes"):
        s2 = p2.session(embeddings=X)
    s2.wait(60)
    n_gone = sum(1 for v in p2.store.labels().values() if v == gone)
    assert s2.model_info["n_labels"] == 20 - n_gone  # trained without the unknown class's labels
    b = s2.next_batch()  # selection works too
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Oracle(s2).label_batch(b)
    assert s2.retrain().n_labels >= 20 - n_gone
    assert np.isfinite(s2.predict_proba_all()[1]).all()
    s2.close()
    p2.close()
