"""`mambart info`: sizes from the config, parameters and dtypes from headers only."""
import json
import re
import subprocess
import sys

import pytest
import torch

from mambart import info as info_module
from mambart import torch_pickle
from mambart.info import describe, format_info


def hf_parameter_count(model) -> int:
    return sum(p.numel() for p in model.parameters())  # a tied head is one parameter


def test_safetensors_model(small_model_dir):
    path, hf_model = small_model_dir
    d = describe(str(path))
    assert (d["family"], d["naming"], d["d_model"], d["n_layer"], d["vocab_size"]) == \
        ("mamba", "hf", 32, 2, 320)
    assert (d["d_inner"], d["d_state"], d["d_conv"], d["dt_rank"]) == (64, 8, 4, 2)
    assert d["parameters"] == hf_parameter_count(hf_model) == 27104
    assert d["dtypes"] == {"F32": 27104} and d["tensors"] == 22
    assert d["tokenizer"] == "tokenizer.json"
    sizes = {p.name: p.stat().st_size for p in path.iterdir()}
    assert d["files"] == {k: sizes[k] for k in d["files"]}
    assert {"config.json", "tokenizer.json", "model.safetensors"} <= set(d["files"])
    assert d["total_bytes"] == sum(d["files"].values())
    json.dumps(d)


@pytest.fixture(scope="module")
def mamba2_bin(tmp_path_factory):
    """An original-format Mamba-2 repo: f16 .bin with f32 D, tied head on the
    embedding's storage, no tokenizer. Returns (path, transformers model)."""
    from test_weights import tiny_mamba2

    path = tmp_path_factory.mktemp("mamba2-bin")
    model = tiny_mamba2(tie_word_embeddings=True)
    sd = {k.replace("backbone.embeddings.", "backbone.embedding."):
          v if k.endswith(".D") else v.half() for k, v in model.state_dict().items()}
    sd["lm_head.weight"] = sd["backbone.embedding.weight"].view(48, 16)
    torch.save(sd, path / "pytorch_model.bin")
    (path / "config.json").write_text(json.dumps({
        "d_model": 16, "n_layer": 2, "vocab_size": 40, "pad_vocab_size_multiple": 16,
        "ssm_cfg": {"layer": "Mamba2", "d_state": 8, "headdim": 8, "ngroups": 2}}))
    return path, model


def test_bin_model_mixed_dtypes_tied_once(mamba2_bin):
    path, model = mamba2_bin
    d = describe(str(path))
    assert (d["family"], d["naming"], d["vocab_size"], d["n_heads"], d["head_dim"]) == \
        ("mamba2", "mamba_ssm", 48, 4, 8)
    assert (d["n_groups"], d["chunk_size"], d["dt_rank"], d["gated_norm"]) == (2, 256, 0, True)
    total = hf_parameter_count(model)
    assert d["parameters"] == total and d["tensors"] == 21          # lm_head stored, not counted
    assert d["dtypes"] == {"F16": total - 8, "F32": 8}              # D: 4 heads x 2 layers
    assert d["tokenizer"] == "EleutherAI/gpt-neox-20b (none in the model)"
    assert list(d["files"]) == ["config.json", "pytorch_model.bin"]


def test_shared_views_have_one_identity(tmp_path):
    """Two names on the same view count once; a different view of a storage counts."""
    w = torch.arange(12.0).reshape(3, 4)
    torch.save({"a": w, "b": w.detach(), "c": w[1:], "lm_head.weight": w}, tmp_path / "pytorch_model.bin")
    names = list(info_module._headers([tmp_path / "pytorch_model.bin"]))
    assert [n for n, *_ in names] == ["a", "b", "c", "lm_head.weight"]
    assert names[0][3] == names[1][3] != names[2][3]


def test_headers_only(mamba2_bin, small_model_dir, monkeypatch):
    """No tensor data is read: the loaders and materialisation are never called."""
    def refuse(*args, **kwargs):
        raise AssertionError("tensor data read")

    monkeypatch.setattr(torch_pickle, "read_torch_bin", refuse)
    monkeypatch.setattr(torch_pickle.TorchArchive, "materialise", refuse)
    monkeypatch.setattr(torch_pickle.TorchArchive, "storage_array", refuse)
    monkeypatch.setattr("mambart.checkpoint.read_safetensors", refuse)
    monkeypatch.setattr("mambart.checkpoint.read_checkpoint", refuse)
    assert describe(str(mamba2_bin[0]))["parameters"] > 0
    assert describe(str(small_model_dir[0]))["parameters"] == 27104


def test_sharded_bin(tmp_path, small_model_dir):
    _, hf_model = small_model_dir
    sd = hf_model.state_dict()
    names = list(sd)
    plan = {"pytorch_model-00001-of-00002.bin": names[:7], "pytorch_model-00002-of-00002.bin": names[7:]}
    for shard, keys in plan.items():
        torch.save({k: sd[k] for k in keys}, tmp_path / shard)
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps(
        {"weight_map": {k: shard for shard, keys in plan.items() for k in keys}}))
    (tmp_path / "config.json").write_text(json.dumps(hf_model.config.to_dict()))
    d = describe(str(tmp_path))
    assert d["parameters"] == 27104
    assert list(d["files"])[1:] == ["pytorch_model.bin.index.json", *plan]


def test_format_info_aligned(mamba2_bin, small_model_dir):
    for path, hidden, shown in [(small_model_dir[0], "n_heads", "dt_rank"),
                                (mamba2_bin[0], "dt_rank", "n_heads")]:
        text = format_info(describe(str(path)))
        lines = text.splitlines()
        columns = {re.match(r"^[^:]+:\s+", line).end() for line in lines}
        assert len(columns) == 1, text                     # every value starts in one column
        keys = [line.split(":")[0] for line in lines]
        assert shown in keys and hidden not in keys        # fields of the other family hidden
    assert re.search(r"^dt_limit: +\(0, inf\)$", text, re.M)
    total = hf_parameter_count(mamba2_bin[1])
    assert re.search(rf"^parameters: +{total:,}$", text, re.M)
    assert re.search(rf"^dtypes: +F16 \({total - 8:,}\), F32 \(8\)$", text, re.M)


def run_cli(*args, cwd):
    # `python -m` from a temporary directory: the installed package is the one imported.
    return subprocess.run([sys.executable, "-m", "mambart", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def test_cli_info(tmp_path, small_model_dir):
    path, _ = small_model_dir
    r = run_cli("info", str(path), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^parameters: +27,104$", r.stdout, re.M)
    assert re.search(r"^family: +mamba$", r.stdout, re.M)
    assert re.search(r"^file model.safetensors: +[\d,]+ bytes", r.stdout, re.M)
    r = run_cli("info", str(tmp_path / "nope"), cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("mambart: error: ") and "nope" in r.stderr
    r = run_cli("info", "--help", cwd=tmp_path)
    assert r.returncode == 0 and "--revision" in r.stdout and "MODEL" in r.stdout


def test_cli_info_bad_checkpoint_one_line(tmp_path, small_model_dir):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text((small_model_dir[0] / "config.json").read_text())
    (tmp_path / "m" / "pytorch_model.bin").write_bytes(b"\x80\x02junk")
    r = run_cli("info", str(tmp_path / "m"), cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "pytorch_model.bin: legacy/unsupported torch.save format" in r.stderr


def test_hybrid_info(small_granite_dir):
    """An attention hybrid: its family, layer pattern and the state a sequence needs."""
    from mambart.info import describe, format_info

    d = describe(str(small_granite_dir[0]))
    assert (d["family"], d["layer_pattern"]) == ("hybrid", "MF AF MF AF")
    # 2 attention layers x (K and V) x 2 KV heads x head dim 16 x 4 bytes.
    assert d["state_bytes_per_token"] == 2 * 2 * 2 * 16 * 4
    # 2 Mamba layers: conv over x, B, C (128 + 2 * 2 * 16 channels, 4 taps) and the (128, 16) SSM state.
    assert d["state_bytes_fixed"] == 4 * 2 * ((128 + 64) * 4 + 128 * 16)
    assert d["parameters"] == sum(p.numel() for p in small_granite_dir[1].parameters())
    text = format_info(d)
    assert "layer_pattern:" in text and "dt_rank" not in text and "n_experts" not in text
    assert "active_parameters" not in d


def test_bamba_info(small_bamba_dir):
    from mambart.info import describe

    d = describe(str(small_bamba_dir[0]))
    assert (d["family"], d["naming"], d["layer_pattern"], d["rope_dim"]) == ("hybrid", "bamba", "MF AF MF AF", 8)
    assert d["rope_scaling"] == {"rope_type": "default"} and "rope_scaling:                default" in format_info(d)
    assert d["parameters"] == sum(p.numel() for p in small_bamba_dir[1].parameters())


def test_moe_info(small_granite_moe_dir):
    """A mixture of experts: total parameters, and those one token uses (top 2 of 8 experts)."""
    from mambart.info import describe, format_info

    path, hf = small_granite_moe_dir
    d = describe(str(path))
    assert (d["layer_pattern"], d["n_experts"], d["top_k"]) == ("ME AE ME", 8, 2)
    total = sum(p.numel() for p in hf.parameters())
    experts = sum(p.numel() for n, p in hf.named_parameters() if ".experts." in n)
    assert d["parameters"] == total
    assert d["active_parameters"] == total - experts * 6 // 8
    text = format_info(d)
    assert "active_parameters:" in text and "n_experts:" in text


def test_nemotron_info(small_nemotron_dir):
    """One block per layer: only the Mamba layers hold a fixed state, only the attention a KV cache."""
    from mambart.info import describe

    path, hf = small_nemotron_dir
    d = describe(str(path))
    assert (d["naming"], d["layer_pattern"], d["n_experts"]) == ("nemotron_h", "M A F E M", 8)
    # 1 attention layer x (K and V) x 2 KV heads x head dim 16 x 4 bytes.
    assert d["state_bytes_per_token"] == 2 * 2 * 16 * 4
    # 2 Mamba layers: conv over x, B, C (128 + 2 * 2 * 16 channels, 4 taps) and the (4, 32, 16) SSM state.
    assert d["state_bytes_fixed"] == 4 * 2 * ((128 + 64) * 4 + 128 * 16)
    experts = sum(p.numel() for n, p in hf.named_parameters() if ".experts." in n)
    assert d["parameters"] == sum(p.numel() for p in hf.parameters()) + 8  # + the selection bias (a buffer)
    assert d["active_parameters"] == d["parameters"] - experts * 6 // 8
