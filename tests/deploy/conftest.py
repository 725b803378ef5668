"""Fixtures of the deploy tests."""
import pytest

from vanillanet_mm.datasets import generate


@pytest.fixture(scope='session')
def data(tmp_path_factory):
    """The demo data set, small: 8 training and 4 validation images."""
    root = tmp_path_factory.mktemp('demo')
    # the demo's size: at 128 the /32 map (4x4) is smaller than UperNet's
    # 6x6 pyramid pooling, which mmdeploy's adaptive-pool rewrite refuses
    generate(str(root), num_train=8, num_val=4, size=192)
    return root
