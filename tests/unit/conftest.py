import pytest

from alworkbench import Project


@pytest.fixture
def proj(tmp_path):
    """A digits project (1,797 real 8x8 images, 10 classes) with batches of 10."""
    p = Project.init(tmp_path / "p", "digits", query={"batch_size": 10})
    yield p
    p.close()


@pytest.fixture
def X(proj):
    """The digits' pixels as embeddings (cheap, informative), rows aligned with the project's items."""
    return proj.source.pixels.reshape(len(proj.items), -1).astype("float32") / 16.0
