"""The random benchmark checkpoints of the README's tables, from transformers' config classes
(tests/models.py builds them; needs torch and transformers):

    python benchmarks/make_models.py OUT_DIR [granite_micro zamba2 falcon_h1 jamba]

writes OUT_DIR/<name> for each name (all four by default), to pass to bench.py
(falcon_h1 takes its multipliers from tests/test_more_hybrids.py, which imports mambart).
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def make(name: str, out: Path) -> None:
    from models import make_falcon_h1, make_granite_hybrid, make_jamba, make_zamba2

    out.mkdir(parents=True, exist_ok=True)
    if name == "granite_micro":
        # Granite-4.0-H-micro's proportions (GQA 8/2 heads of 128, Mamba heads of 64, state 128,
        # MLP 4x), cut to d_model 1024, 8 layers (M M M A M M M A), vocab 16384: 179M parameters.
        make_granite_hybrid(out, hidden_size=1024, layer_types=("mamba",) * 3 + ("attention",) + ("mamba",) * 3
                            + ("attention",), num_attention_heads=8, num_key_value_heads=2,
                            shared_intermediate_size=4096, mamba_n_heads=32, mamba_d_state=128, mamba_n_groups=1,
                            vocab_size=16384, embedding_multiplier=12.0, residual_multiplier=0.22,
                            logits_scaling=6.0)
    elif name == "zamba2":
        # Zamba2-1.2B's layer shape at half width: hidden 1024, 16 heads of 128 on the 2D-wide input,
        # Mamba-2 of 32 heads x 64 and d_state 64, MLP 4096, adapters of rank 64; 4 layers, two hybrid.
        make_zamba2(out, hidden_size=1024, layers_block_type=("mamba", "hybrid", "mamba", "hybrid"),
                    num_attention_heads=16, use_shared_attention_adapter=True, adapter_rank=64,
                    intermediate_size=4096, n_mamba_heads=32, mamba_d_state=64, mamba_ngroups=1, use_mem_rope=True,
                    vocab_size=32000, adapter_std=0.02)
    elif name == "falcon_h1":
        from test_more_hybrids import FALCON_H1_05B

        # Falcon-H1-0.5B's layer shape (hidden 1024, GQA 8/2 x 64, Mamba-2 of d_state 128), 4 layers.
        make_falcon_h1(out, hidden_size=1024, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2,
                       head_dim=64, intermediate_size=2048, mamba_n_heads=32, mamba_d_state=128, mamba_n_groups=1,
                       multipliers=FALCON_H1_05B, vocab_size=32768)
    elif name == "jamba":
        # Width 1024: attention at layer 1 of 4, experts (top 2 of 8) at layers 1 and 3.
        make_jamba(out, hidden_size=1024, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2,
                   intermediate_size=2048, num_experts=8, num_experts_per_tok=2, attn_layer_period=4,
                   attn_layer_offset=1, expert_layer_period=2, expert_layer_offset=1, vocab_size=32768)
    else:
        raise ValueError(f"unknown model {name!r}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    names = ["granite_micro", "zamba2", "falcon_h1", "jamba"]
    # Checked here, not by choices=: argparse (3.11) refuses an empty nargs="*" list against choices.
    p.add_argument("names", nargs="*", help=f"of {', '.join(names)} (default: all four)")
    args = p.parse_args()
    for name in args.names:
        if name not in names:
            p.error(f"unknown model {name!r}: choose from {', '.join(names)}")
    for name in args.names or names:
        make(name, args.out / name)


if __name__ == "__main__":
    main()
