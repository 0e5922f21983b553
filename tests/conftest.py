import os
import sys
from pathlib import Path

import pytest

# Never reach the network from a test.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def small_model_dir(tmp_path_factory):
    """A small random Mamba-1 checkpoint (f32, tied) with a tokenizer: (path, hf_model)."""
    from models import make_mamba

    path = tmp_path_factory.mktemp("mamba-small")
    return path, make_mamba(path, hidden_size=32, num_hidden_layers=2, state_size=8, vocab_size=320)
