"""Tiny random Mamba checkpoints made at test time with transformers.

torch and transformers are test-only oracles: imported here, never by mambart.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import MambaConfig, MambaForCausalLM

CORPUS = [
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "The quick brown fox jumps over the lazy dog. Café déjà vu, naïve façade.",
    "Mamba is a state space model. 状態空間モデル。 Ünïcödé 🐍🐍 emoji ✨ text.",
    "import numpy as np\nx = np.zeros((3, 4), dtype=np.float32)\nprint(x.shape)\n",
] * 20


def train_tokenizer(out_dir: Path, vocab_size: int = 300) -> Tokenizer:
    """A byte-level BPE tokenizer with <|endoftext|> as id 0, saved as tokenizer.json."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save(str(out_dir / "tokenizer.json"))
    return tok


def make_mamba(out_dir: Path, *, hidden_size: int = 32, num_hidden_layers: int = 2, state_size: int = 8,
               expand: int = 2, time_step_rank: int | str = "auto", conv_kernel: int = 4, vocab_size: int = 320,
               tie_word_embeddings: bool = True, use_bias: bool = False, perturb: bool = True,
               dtype: torch.dtype = torch.float32, seed: int = 0) -> MambaForCausalLM:
    """Save a random MambaForCausalLM (and a tokenizer) to out_dir; return it in f32.

    The model starts from its own initialisation. With perturb, the
    parameters that initialise to constants (norm weights, D, biases) get
    noise too, so that a mistake in how they are used changes the output.
    The returned model holds exactly the saved values (after rounding to
    `dtype`), in float32, in eval mode.
    """
    torch.manual_seed(seed)
    config = MambaConfig(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
                         state_size=state_size, expand=expand, time_step_rank=time_step_rank,
                         conv_kernel=conv_kernel, tie_word_embeddings=tie_word_embeddings, use_bias=use_bias,
                         pad_token_id=0, bos_token_id=0, eos_token_id=0)
    model = MambaForCausalLM(config).eval()
    if perturb:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith(("norm.weight", "norm_f.weight", ".D")):
                    p.add_(0.2 * torch.randn_like(p))
                elif name.endswith("bias"):
                    p.add_(0.1 * torch.randn_like(p))
    model = model.to(dtype)
    model.save_pretrained(out_dir)
    if not (out_dir / "tokenizer.json").exists():
        train_tokenizer(out_dir, vocab_size=min(vocab_size, 300))
    return model.float().eval()


def hf_logits(model: MambaForCausalLM, ids: list[int]) -> "torch.Tensor":
    """transformers' full-forward logits, (len(ids), V), float64 numpy."""
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].double().numpy()


def set_model_type(path: Path, model_type: str) -> None:
    cfg = json.loads((path / "config.json").read_text())
    cfg["model_type"] = model_type
    (path / "config.json").write_text(json.dumps(cfg))
