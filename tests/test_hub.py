"""Model resolution: local directories, the Hugging Face cache offline, and
download selection with huggingface_hub's network calls replaced by fakes.

huggingface_hub reads HF_HUB_CACHE / HF_HUB_OFFLINE at import, so the cache
tests run in a fresh interpreter with those variables set; HF_ENDPOINT points
at a closed local port so that any network attempt would fail fast.
"""
import json
import os
import re
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest

from mambart import hub

COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


# --- local paths ---------------------------------------------------------------------


def test_local_directory_returned_as_is(tmp_path):
    assert hub.resolve(str(tmp_path)) == tmp_path


def test_revision_with_a_local_model_is_an_error(tmp_path):
    # It was ignored: the directory's files ran, whatever revision was asked for.
    for model in (str(tmp_path), "builtin"):
        with pytest.raises(ValueError, match=f"'{model}' is a local model"):
            hub.resolve(model, revision="v2")
    assert hub.resolve(str(tmp_path), revision=None) == tmp_path


def test_home_relative_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "m").mkdir()
    assert hub.resolve("~/m") == tmp_path / "m"


def test_file_is_not_a_directory(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        hub.resolve(str(tmp_path / "config.json"))


@pytest.mark.parametrize("model", ["./nope", "../nope", "/no/such/dir", "~/no-such-dir-xyz",
                                   "a/b/c", "C:\\models\\x"])
def test_missing_path_like(model):
    with pytest.raises(FileNotFoundError, match=f"^model path '{re.escape(model)}' does not exist$"):
        hub.resolve(model)


@pytest.mark.parametrize("model", ["not a repo", "org/na me", "org/--x"])
def test_invalid_repo_id(model):
    with pytest.raises(FileNotFoundError, match="not a valid Hugging Face repo id"):
        hub.resolve(model)


# --- file selection ------------------------------------------------------------------

EXTRAS = [".gitattributes", "README.md", "tokenizer.json", "tokenizer_config.json",
          "special_tokens_map.json", "generation_config.json", "config.json"]


def no_shards(index):
    raise AssertionError(f"index {index} should not be read")


def test_choose_single_safetensors_over_bin():
    files = EXTRAS + ["model.safetensors", "pytorch_model.bin", "model.safetensors.index.json"]
    assert hub.choose_files(files, no_shards) == [
        "config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
        "generation_config.json", "model.safetensors"]


def test_choose_sharded_safetensors():
    shards = [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    files = ["config.json", "pytorch_model.bin", "model.safetensors.index.json", *shards]
    assert hub.choose_files(files, lambda index: shards[::-1] + shards) == [
        "config.json", "model.safetensors.index.json", *shards]


def test_choose_bin_only_without_safetensors():
    assert hub.choose_files(["config.json", "pytorch_model.bin", "README.md"], no_shards) == \
        ["config.json", "pytorch_model.bin"]


def test_choose_sharded_bin_without_safetensors():
    shards = ["pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"]
    files = ["config.json", "README.md", "pytorch_model.bin.index.json", *shards]
    assert hub.choose_files(files, lambda index: shards) == [
        "config.json", "pytorch_model.bin.index.json", *shards]


@pytest.mark.parametrize("files, shard_names, message", [
    (["model.safetensors", "tokenizer.json"], [], "repository has no config.json"),
    (["config.json", "tokenizer.json"], [], "repository has no weights"),
    (["config.json", "model.safetensors.index.json", "a.safetensors"],
     ["a.safetensors", "b.safetensors"], "names shard 'b.safetensors', which the repository"),
])
def test_choose_errors(files, shard_names, message):
    with pytest.raises(FileNotFoundError, match=message):
        hub.choose_files(files, lambda index: shard_names)


# --- download path, with fakes for every network call -------------------------------------


def http_error(cls, text="404 Client Error.\n\nRepository Not Found for url: ...\nMore"):
    """A huggingface_hub error with a multi-line message, built without a response."""
    err = cls.__new__(cls)
    Exception.__init__(err, text)
    return err


class FakeHub:
    """Stands in for HfApi().model_info and hf_hub_download."""

    def __init__(self, root, files, error=None, contents=None):
        self.root, self.files, self.error = root, files, error
        self.contents = contents or {}
        self.downloads = []
        self.repos = set()

    def install(self, monkeypatch):
        fake = self

        class Api:
            def model_info(self, repo_id, revision=None):
                if fake.error is not None:
                    raise fake.error
                siblings = [types.SimpleNamespace(rfilename=f) for f in fake.files]
                return types.SimpleNamespace(sha=COMMIT, siblings=siblings)

        def download(repo_id, filename, revision=None):
            assert revision == COMMIT  # every file from the one listed commit
            fake.downloads.append(filename)
            fake.repos.add(repo_id)
            path = fake.root / "snapshots" / revision / filename
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(fake.contents.get(filename, "{}"))
            return str(path)

        monkeypatch.setattr(huggingface_hub, "HfApi", Api)
        monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
        monkeypatch.setattr(hub, "is_offline", lambda: False)


def test_download_only_needed_files(tmp_path, monkeypatch):
    fake = FakeHub(tmp_path, EXTRAS + ["model.safetensors", "pytorch_model.bin"])
    fake.install(monkeypatch)
    out = hub.resolve("org/name")
    assert out == tmp_path / "snapshots" / COMMIT
    assert sorted(fake.downloads) == sorted(
        ["config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
         "generation_config.json", "model.safetensors"])


def test_download_mistral_layout(tmp_path, monkeypatch):
    """A repo in Mistral's layout only (params.json + consolidated.safetensors) is fetched as such."""
    fake = FakeHub(tmp_path, ["params.json", "consolidated.safetensors", "tokenizer.model.v3", "tokenizer.json"])
    fake.install(monkeypatch)
    assert hub.resolve("mistralai/mamba") == tmp_path / "snapshots" / COMMIT
    assert sorted(fake.downloads) == ["consolidated.safetensors", "params.json", "tokenizer.json"]


def test_download_sharded_reads_index_once(tmp_path, monkeypatch):
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors",
                            "b": "model-00002-of-00002.safetensors"}}
    files = ["config.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors",
             "model-00002-of-00002.safetensors", "pytorch_model.bin"]
    fake = FakeHub(tmp_path, files, contents={"model.safetensors.index.json": json.dumps(index)})
    fake.install(monkeypatch)
    hub.resolve("org/name", revision="main")
    assert fake.downloads == ["model.safetensors.index.json", "config.json",
                              "model-00001-of-00002.safetensors",
                              "model-00002-of-00002.safetensors"]


@pytest.mark.parametrize("error, kind, message", [
    (http_error(huggingface_hub.utils.RepositoryNotFoundError), FileNotFoundError,
     "model 'org/name' not found: not a local directory, and no such repository on the "
     "Hugging Face Hub"),
    (http_error(huggingface_hub.utils.GatedRepoError), PermissionError,
     "model 'org/name' is gated: accept its terms"),
    (http_error(huggingface_hub.utils.RevisionNotFoundError), FileNotFoundError,
     "model 'org/name' not found: the repository has no such revision"),
    (ConnectionError("Failed to resolve 'huggingface.co'\nsecond line"), ConnectionError,
     "model 'org/name': cannot reach the Hugging Face Hub \\(ConnectionError: Failed to "
     "resolve 'huggingface.co'\\), and it is not in the local cache"),
])
def test_download_errors_are_one_line(tmp_path, monkeypatch, error, kind, message):
    FakeHub(tmp_path, [], error=error).install(monkeypatch)
    monkeypatch.setattr(hub, "_from_cache", lambda repo_id, revision: None)
    with pytest.raises(kind, match="^" + message) as info:
        hub.resolve("org/name")
    assert "\n" not in str(info.value)


def test_unreachable_hub_falls_back_to_cache(tmp_path, monkeypatch):
    FakeHub(tmp_path, [], error=TimeoutError("timed out")).install(monkeypatch)
    monkeypatch.setattr(hub, "_from_cache", lambda repo_id, revision: tmp_path)
    assert hub.resolve("org/name") == tmp_path


def test_repo_without_weights(tmp_path, monkeypatch):
    FakeHub(tmp_path, ["config.json", "README.md"]).install(monkeypatch)
    with pytest.raises(FileNotFoundError, match="^model 'org/name': repository has no weights"):
        hub.resolve("org/name")


# --- offline, against a fake Hugging Face cache (fresh interpreter) -------------------------


def make_cache(root: Path) -> Path:
    """models--org--name with refs main -> COMMIT and v1 -> OTHER_COMMIT."""
    repo = root / "models--org--name"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    (repo / "refs" / "v1").write_text(OTHER_COMMIT)
    for commit in (COMMIT, OTHER_COMMIT):
        snap = repo / "snapshots" / commit
        snap.mkdir(parents=True)
        for name in ("config.json", "tokenizer.json", "model.safetensors"):
            (snap / name).write_text(commit if name == "config.json" else "x")
    # A repo cached without its config: not a usable model.
    nocfg = root / "models--org--noconfig"
    (nocfg / "refs").mkdir(parents=True)
    (nocfg / "refs" / "main").write_text(COMMIT)
    (nocfg / "snapshots" / COMMIT).mkdir(parents=True)
    (nocfg / "snapshots" / COMMIT / "model.safetensors").write_text("x")
    # Mistral's layout: params.json instead of config.json.
    mistral = root / "models--org--mistral"
    (mistral / "refs").mkdir(parents=True)
    (mistral / "refs" / "main").write_text(COMMIT)
    (mistral / "snapshots" / COMMIT).mkdir(parents=True)
    for name in ("params.json", "consolidated.safetensors"):
        (mistral / "snapshots" / COMMIT / name).write_text("x")
    return repo


SCRIPT = textwrap.dedent("""
    import json, sys
    from mambart.hub import resolve
    out = []
    for model, revision in json.loads(sys.argv[1]):
        try:
            out.append(["ok", str(resolve(model, revision=revision))])
        except Exception as e:
            out.append([type(e).__name__, str(e)])
    print(json.dumps(out))
""")


def run_offline(tmp_path, calls, **env_extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_HOME=str(tmp_path / "home"), HF_HUB_CACHE=str(tmp_path / "cache"),
               HF_HUB_OFFLINE="1", HF_ENDPOINT="http://127.0.0.1:9")
    env.update(env_extra)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(calls)], env=env,
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_offline_cache_resolution(tmp_path):
    repo = make_cache(tmp_path / "cache")
    results = run_offline(tmp_path, [
        ["org/name", None], ["org/name", "v1"], ["org/name", OTHER_COMMIT],
        ["foo/bar", None], ["org/name", "v2"], ["org/noconfig", None], ["org/mistral", None],
    ])
    assert results[0] == ["ok", str(repo / "snapshots" / COMMIT)]
    assert results[1] == ["ok", str(repo / "snapshots" / OTHER_COMMIT)]
    assert results[2] == ["ok", str(repo / "snapshots" / OTHER_COMMIT)]
    assert results[3] == ["FileNotFoundError", "model 'foo/bar' not found: not a local "
                          "directory, and not in the Hugging Face cache (offline mode)"]
    assert results[4] == ["FileNotFoundError", "model 'org/name' (revision 'v2') not found: not "
                          "a local directory, and not in the Hugging Face cache (offline mode)"]
    assert results[5][0] == "FileNotFoundError" and "org/noconfig" in results[5][1]
    assert results[6] == ["ok", str(repo.parent / "models--org--mistral" / "snapshots" / COMMIT)]


def test_offline_resolved_dir_loads(tmp_path):
    """The resolved snapshot is usable by the loaders (symlinked blobs, as the cache has)."""
    repo = make_cache(tmp_path / "cache")
    snap = repo / "snapshots" / COMMIT
    blobs = repo / "blobs"
    blobs.mkdir()
    (blobs / "abc").write_text(json.dumps({"model_type": "mamba", "hidden_size": 16,
                                           "num_hidden_layers": 1}))
    (snap / "config.json").unlink()
    (snap / "config.json").symlink_to(Path("..") / ".." / "blobs" / "abc")
    [[status, path]] = run_offline(tmp_path, [["org/name", None]])
    assert status == "ok"
    from mambart.config import load_config
    assert load_config(path).d_model == 16


def test_offline_via_transformers_variable(tmp_path):
    make_cache(tmp_path / "cache")
    [[status, message]] = run_offline(tmp_path, [["foo/bar", None]], HF_HUB_OFFLINE="",
                                      TRANSFORMERS_OFFLINE="1")
    assert status == "FileNotFoundError" and "offline mode" in message


@pytest.mark.parametrize("value, expected", [("1", True), ("true", True), ("ON", True),
                                             ("0", False), ("", False)])
def test_offline_variable_read_at_call_time(monkeypatch, value, expected):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    assert hub.is_offline() is expected



# --- tokenizer resolution ------------------------------------------------------------------


@pytest.fixture
def tok_dir(tmp_path):
    d = tmp_path / "tok"
    d.mkdir()
    (d / "tokenizer.json").write_text("{}")
    return d


def no_hub(*args, **kwargs):
    raise AssertionError("the Hub must not be consulted")


def test_tokenizer_explicit_forms(tmp_path, tok_dir, monkeypatch):
    monkeypatch.setattr(hub, "_hub_tokenizer", no_hub)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "tokenizer.json").write_text("{}")
    assert hub.resolve_tokenizer(model_dir, str(tok_dir)) == tok_dir          # explicit wins
    assert hub.resolve_tokenizer(model_dir, str(tok_dir / "tokenizer.json")) == tok_dir
    assert hub.resolve_tokenizer(model_dir, None) == model_dir                 # then the model's


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "empty", "tokenizer directory '.*empty' has no tokenizer.json"),
    (lambda d: d / "tok" / "vocab.txt", "tokenizer file '.*vocab.txt' must be named tokenizer.json"),
    (lambda d: d / "missing" / "tokenizer.json", "tokenizer path '.*' does not exist"),
    (lambda d: "my-tokenizer.json", "tokenizer path 'my-tokenizer.json' does not exist"),
    (lambda d: "org/na me", "tokenizer 'org/na me' not found: not a local path, and not a valid"),
])
def test_tokenizer_explicit_errors(tmp_path, tok_dir, monkeypatch, make, message):
    monkeypatch.setattr(hub, "_hub_tokenizer", no_hub)
    (tmp_path / "empty").mkdir()
    (tok_dir / "vocab.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="^" + message) as info:
        hub.resolve_tokenizer(tmp_path, str(make(tmp_path)))
    assert "\n" not in str(info.value)


TOKENIZER_REPO = EXTRAS + ["model.safetensors", "pytorch_model.bin", "merges.txt"]


def test_tokenizer_hub_id_fetches_only_tokenizer_files(tmp_path, monkeypatch):
    fake = FakeHub(tmp_path, TOKENIZER_REPO)
    fake.install(monkeypatch)
    out = hub.resolve_tokenizer(tmp_path, "org/tok")
    assert out == tmp_path / "snapshots" / COMMIT
    assert sorted(fake.downloads) == ["special_tokens_map.json", "tokenizer.json",
                                      "tokenizer_config.json"]
    assert fake.repos == {"org/tok"}


def test_tokenizer_fallback_to_gpt_neox(tmp_path, monkeypatch):
    fake = FakeHub(tmp_path / "hub", ["tokenizer.json", "tokenizer_config.json", "README.md"])
    fake.install(monkeypatch)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    assert hub.resolve_tokenizer(model_dir) == tmp_path / "hub" / "snapshots" / COMMIT
    assert sorted(fake.downloads) == ["tokenizer.json", "tokenizer_config.json"]
    assert fake.repos == {"EleutherAI/gpt-neox-20b"}


def test_tokenizer_fallback_repo_without_tokenizer(tmp_path, monkeypatch):
    FakeHub(tmp_path, ["config.json", "README.md"]).install(monkeypatch)
    with pytest.raises(FileNotFoundError) as info:
        hub.resolve_tokenizer(tmp_path / "snapshots")
    msg = str(info.value)
    assert msg.startswith(f"no tokenizer: '{tmp_path / 'snapshots'}' has no tokenizer.json, "
                          "and the default tokenizer 'EleutherAI/gpt-neox-20b' is unavailable")
    assert "the repository has no tokenizer.json" in msg and "\n" not in msg


def save_mamba_ssm_bin(out_dir: Path, hf_model) -> Path:
    """A tiny original-format Mamba-1 repo: config.json (unpadded vocab), a torch.save
    pytorch_model.bin with mamba_ssm names and the tied head on the embedding's
    storage, and no tokenizer."""
    import torch

    cfg = hf_model.config
    out_dir.mkdir(parents=True, exist_ok=True)
    sd = {k.replace("backbone.embeddings.", "backbone.embedding."): v
          for k, v in hf_model.state_dict().items()}
    sd["lm_head.weight"] = sd["backbone.embedding.weight"].detach()
    torch.save(sd, out_dir / "pytorch_model.bin")
    (out_dir / "config.json").write_text(json.dumps({
        "d_model": cfg.hidden_size, "n_layer": cfg.num_hidden_layers,
        "vocab_size": cfg.vocab_size - 3, "ssm_cfg": {"d_state": cfg.state_size},
        "rms_norm": True, "residual_in_fp32": True, "fused_add_norm": True,
        "pad_vocab_size_multiple": 8}))
    return out_dir


def test_load_bin_model_with_explicit_tokenizer(tmp_path, small_model_dir, monkeypatch):
    """End to end: an original-format .bin model, tokenizer from elsewhere, logits as HF."""
    import mambart
    from models import hf_logits

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    hf_dir, hf_model = small_model_dir
    model_dir = save_mamba_ssm_bin(tmp_path / "mamba-tiny", hf_model)
    with pytest.raises(FileNotFoundError, match="no tokenizer: .*mamba-tiny' has no "
                       "tokenizer.json, and the default tokenizer 'EleutherAI/gpt-neox-20b'"):
        mambart.load(model_dir)  # offline in tests, nothing cached
    model = mambart.load(model_dir, tokenizer=str(hf_dir))
    assert model.config.naming == "mamba_ssm" and model.config.vocab_size == 320
    ids = model.tokenizer.encode("def fibonacci(n):")
    np.testing.assert_allclose(model.logits(ids), hf_logits(hf_model, ids), rtol=1e-4, atol=1e-4)


def test_offline_fallback_tokenizer_from_cache(tmp_path, small_model_dir):
    """No tokenizer in the model repo: gpt-neox-20b's comes from the cache, and the
    model's cached snapshot is named by its repo id in errors."""
    hf_dir, hf_model = small_model_dir
    cache = tmp_path / "cache"
    model_repo = cache / "models--state-spaces--mamba-tiny"
    (model_repo / "refs").mkdir(parents=True)
    (model_repo / "refs" / "main").write_text(COMMIT)
    save_mamba_ssm_bin(model_repo / "snapshots" / COMMIT, hf_model)
    script = textwrap.dedent("""
        import json, sys, mambart
        try:
            model = mambart.load("state-spaces/mamba-tiny")
            print(json.dumps(["ok", str(model.tokenizer.vocab_size), model.generate(
                "def", max_new_tokens=3, temperature=0)]))
        except Exception as e:
            print(json.dumps([type(e).__name__, str(e)]))
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_HOME=str(tmp_path / "home"), HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1",
               HF_ENDPOINT="http://127.0.0.1:9")

    def run():
        proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                              text=True, timeout=120, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.strip().splitlines()[-1])

    status, message = run()
    assert status == "FileNotFoundError"
    assert message.startswith("no tokenizer: 'state-spaces/mamba-tiny' has no tokenizer.json, "
                              "and the default tokenizer 'EleutherAI/gpt-neox-20b' is unavailable "
                              "(tokenizer 'EleutherAI/gpt-neox-20b' is not in the Hugging Face "
                              "cache (offline mode))")
    tok_repo = cache / "models--EleutherAI--gpt-neox-20b"
    (tok_repo / "refs").mkdir(parents=True)
    (tok_repo / "refs" / "main").write_text(OTHER_COMMIT)
    (tok_repo / "snapshots" / OTHER_COMMIT).mkdir(parents=True)
    (tok_repo / "snapshots" / OTHER_COMMIT / "tokenizer.json").write_text(
        (hf_dir / "tokenizer.json").read_text())
    status, vocab, text = run()
    assert status == "ok", vocab
    assert int(vocab) == 300 and isinstance(text, str)
