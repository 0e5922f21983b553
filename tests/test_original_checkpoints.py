"""Original mamba_ssm checkpoints (config.json + torch.save'd pytorch_model.bin), read without torch."""
import shutil

import numpy as np
import pytest

import mambart
from models import hf_logits, make_mamba, make_mamba2, rel_err, save_as_mamba_ssm


MODELS = {
    "mamba1": lambda p: make_mamba(p, hidden_size=32, num_hidden_layers=2, state_size=8, vocab_size=320),
    "mamba1_untied": lambda p: make_mamba(p, hidden_size=40, num_hidden_layers=2, state_size=16, time_step_rank=5,
                                          vocab_size=320, tie_word_embeddings=False),
    "mamba2": lambda p: make_mamba2(p, hidden_size=64, head_dim=32, state_size=64, n_groups=2, vocab_size=320),
}


@pytest.mark.parametrize("shards", [1, 3])
@pytest.mark.parametrize("kind", list(MODELS))
def test_original_layout_matches_transformers(tmp_path, kind, shards):
    hf = MODELS[kind](tmp_path / "hf")
    original = tmp_path / "original"
    save_as_mamba_ssm(hf, original, shards=shards)
    # These repos ship no tokenizer: name one explicitly.
    model = mambart.load(original, tokenizer=str(tmp_path / "hf"))
    ids = np.random.default_rng(0).integers(0, 300, 50).tolist()
    assert rel_err(model.logits(ids), hf_logits(hf, ids)) <= 1e-4
    assert model.config.vocab_size == hf.config.vocab_size


def test_padded_vocab_rows_are_never_sampled(tmp_path):
    """vocab 317 padded to 320: the 3 padding rows are computed but never drawn."""
    hf = make_mamba(tmp_path / "hf", hidden_size=32, num_hidden_layers=2, state_size=8, vocab_size=320)
    original = tmp_path / "original"
    save_as_mamba_ssm(hf, original, vocab_size=317)
    model = mambart.load(original, tokenizer=str(tmp_path / "hf"))
    assert model.config.vocab_size == 320
    assert model.logits([1, 2]).shape == (2, 320)
    assert model.vocab_limit <= 317
    dec = model.decoder(1)
    dec.prefill([[1, 2, 3]])
    dec.set_sampling(mambart.SamplingParams(temperature=5.0, seed=0))
    seen = set()
    for _ in range(200):
        (t,) = dec.sample()
        seen.add(int(t))
        dec.step([t])
    assert max(seen) < model.vocab_limit


def test_tokenizer_in_the_directory_is_used(tmp_path):
    hf = make_mamba(tmp_path / "hf", hidden_size=32, num_hidden_layers=2, state_size=8, vocab_size=320)
    original = tmp_path / "original"
    save_as_mamba_ssm(hf, original)
    shutil.copy(tmp_path / "hf" / "tokenizer.json", original / "tokenizer.json")
    assert mambart.load(original).generate("def", max_new_tokens=3, temperature=0) is not None
