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


@pytest.fixture(scope="session")
def small_mamba2_dir(tmp_path_factory):
    """A small random Mamba-2 checkpoint (f32, tied, 2 groups) with a tokenizer: (path, hf_model)."""
    from models import make_mamba2

    path = tmp_path_factory.mktemp("mamba2-small")
    return path, make_mamba2(path, hidden_size=64, head_dim=32, state_size=16, n_groups=2, vocab_size=320)


@pytest.fixture(scope="session")
def chat_dir(tmp_path_factory):
    """A tiny Mamba with a ChatML template and tokenizer (serve_util.make_chat_model)."""
    from serve_util import make_chat_model

    return make_chat_model(tmp_path_factory.mktemp("chat-model"))


@pytest.fixture(scope="session")
def local(chat_dir):
    """The chat model, loaded in this process: the reference for what a server returns."""
    import mambart

    return mambart.load(chat_dir, threads=1)


@pytest.fixture(scope="session")
def small_falcon_mamba_dir(tmp_path_factory):
    """A small random Falcon-Mamba checkpoint (f32, tied) with a tokenizer: (path, hf_model)."""
    from models import make_mamba

    path = tmp_path_factory.mktemp("falcon-mamba-small")
    return path, make_mamba(path, hidden_size=32, num_hidden_layers=2, state_size=8, vocab_size=320,
                            mixer_rms_eps=1e-6)


@pytest.fixture(scope="session")
def small_granite_dir(tmp_path_factory):
    """A small random Granite-4.0-H (dense; Mamba-2 and GQA attention layers, rope) with a tokenizer."""
    from models import make_granite_hybrid

    path = tmp_path_factory.mktemp("granite-small")
    return path, make_granite_hybrid(path, layer_types=("mamba", "attention", "mamba", "attention"))


@pytest.fixture(scope="session")
def small_bamba_dir(tmp_path_factory):
    """A small random Bamba (Mamba-2 and GQA attention layers, partial rope) with a tokenizer."""
    from models import make_bamba

    path = tmp_path_factory.mktemp("bamba-small")
    return path, make_bamba(path, num_hidden_layers=4, attn_layer_indices=(1, 3))


@pytest.fixture(scope="session")
def small_falcon_h1_dir(tmp_path_factory):
    """A small random Falcon-H1 (3 layers of Mamba-2 beside GQA attention, Falcon-H1-0.5B's multipliers)."""
    from models import make_falcon_h1
    from test_more_hybrids import FALCON_H1_05B

    path = tmp_path_factory.mktemp("falcon-h1-small")
    return path, make_falcon_h1(path, multipliers=FALCON_H1_05B)


@pytest.fixture(scope="session")
def small_granite_moe_dir(tmp_path_factory):
    """A small random Granite-4.0-H with experts (top 2 of 8 beside the shared MLP)."""
    from models import make_granite_hybrid

    path = tmp_path_factory.mktemp("granite-moe-small")
    return path, make_granite_hybrid(path, layer_types=("mamba", "attention", "mamba"), num_local_experts=8)


@pytest.fixture(scope="session")
def small_nemotron_dir(tmp_path_factory):
    """A small random Nemotron-H: one layer of each kind (Mamba-2, attention, MLP, experts) and a Mamba."""
    from models import make_nemotron_h

    path = tmp_path_factory.mktemp("nemotron-h-small")
    return path, make_nemotron_h(path, layers="M*-EM")


@pytest.fixture(scope="session")
def small_zamba2_dir(tmp_path_factory):
    """A small random Zamba2 (two shared blocks over three layers, q/k/v and MLP adapters of std 0.05, rope)."""
    from models import make_zamba2

    path = tmp_path_factory.mktemp("zamba2-small")
    return path, make_zamba2(path, num_mem_blocks=2, use_shared_attention_adapter=True, use_mem_rope=True,
                             adapter_std=0.05, layers_block_type=("hybrid", "mamba", "hybrid", "mamba", "hybrid"))


@pytest.fixture(scope="session")
def small_jamba_dir(tmp_path_factory):
    """A small random Jamba: attention every 3rd layer from 1, experts (top 2 of 4) every 2nd from 0. Not among
    any_model_dir's: its logits move more under weight rounding than test_dtypes' bounds on the largest logit
    difference allow (its KL stays well within); test_more_hybrids checks its weight types instead."""
    from models import make_jamba

    path = tmp_path_factory.mktemp("jamba-small")
    return path, make_jamba(path)


FAMILY_FIXTURES = {"mamba1": "small_model_dir", "mamba2": "small_mamba2_dir", "falcon_mamba": "small_falcon_mamba_dir",
                   "granite_hybrid": "small_granite_dir", "bamba": "small_bamba_dir",
                   "falcon_h1": "small_falcon_h1_dir", "granite_moe": "small_granite_moe_dir",
                   "nemotron_h": "small_nemotron_dir", "zamba2": "small_zamba2_dir"}


@pytest.fixture(scope="session", params=list(FAMILY_FIXTURES))
def any_model_dir(request):
    """Each small checkpoint in turn, one per family: (path, hf_model)."""
    fixture = FAMILY_FIXTURES[request.param]
    return request.getfixturevalue(fixture)
