"""Model resolution: a local directory, or a Hugging Face Hub repo id.

For a repo id only the files inference needs are fetched (reference doc 6.4):
config, tokenizer files, generation defaults and one weights format. Models
without a tokenizer get one from `resolve_tokenizer` (doc 5.4). With
HF_HUB_OFFLINE=1 only the local Hugging Face cache is used. Failures raise
one-line OSError subclasses (FileNotFoundError, PermissionError,
ConnectionError) instead of huggingface_hub's long messages.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable

import huggingface_hub as hf
from huggingface_hub import constants as hf_constants
from huggingface_hub.utils import (
    GatedRepoError, HFValidationError, RepositoryNotFoundError, RevisionNotFoundError,
    validate_repo_id,
)

from .builtin import BUILTIN_DIR, BUILTIN_NAME
from .checkpoint import (
    MISTRAL_FILE, PYTORCH_FILE, PYTORCH_INDEX, SAFETENSORS_FILE, SAFETENSORS_INDEX, read_index,
)
from .config import MISTRAL_PARAMS_FILE, config_path

# Small files fetched whenever the repo has them; config.json is required.
CONFIG_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json",
                "special_tokens_map.json", "generation_config.json")
# Weight formats in order of preference (transformers' order); the first wins.
WEIGHT_FORMATS = (SAFETENSORS_FILE, SAFETENSORS_INDEX, PYTORCH_FILE, PYTORCH_INDEX)
# Fetched from a tokenizer repo (tokenizer.json is required), and the repo used
# when a model ships no tokenizer (doc 5.4).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
DEFAULT_TOKENIZER = "EleutherAI/gpt-neox-20b"


def resolve(model: str, *, revision: str | None = None) -> Path:
    """The local directory holding `model`'s config.json, tokenizer and weights.

    `model` is an existing directory (returned as is) or a Hub repo id such as
    "state-spaces/mamba-130m-hf", downloaded (or, offline, looked up in the
    cache) at `revision` (branch, tag or commit; default "main"), or
    "builtin": the small model shipped inside the package (a directory of
    that name is "./builtin"). A revision with a local model is a ValueError:
    there is nothing it could select.
    """
    path = Path(model).expanduser()
    if revision is not None and (model == BUILTIN_NAME or path.is_dir()):
        raise ValueError(f"a revision ({revision!r}) selects a version of a Hugging Face hub repo; "
                         f"'{model}' is a local model")
    if model == BUILTIN_NAME:
        if not (BUILTIN_DIR / "config.json").is_file():
            raise FileNotFoundError(f"the built-in model is missing from this installation ({BUILTIN_DIR})")
        return BUILTIN_DIR
    if path.is_dir():
        return path
    if path.exists():
        raise FileNotFoundError(f"model path '{model}' is not a directory")
    if _looks_like_path(model):
        raise FileNotFoundError(f"model path '{model}' does not exist")
    try:
        validate_repo_id(model)
    except HFValidationError:
        raise FileNotFoundError(f"model '{model}' not found: not a local directory, "
                                "and not a valid Hugging Face repo id") from None
    if is_offline():
        found = _from_cache(model, revision)
        if found is None:
            raise FileNotFoundError(f"{_label(model, revision)} not found: not a local directory, "
                                    "and not in the Hugging Face cache (offline mode)")
        return found
    return _download(model, revision)


def is_offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub read it at import, or as set now."""
    env = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return bool(hf_constants.HF_HUB_OFFLINE) or env in {"1", "ON", "YES", "TRUE"}


def choose_files(repo_files: Iterable[str], shards: Callable[[str], list[str]]) -> list[str]:
    """The files to fetch from a repo listing: config/tokenizer files and one weights format.

    `shards(index_file)` returns the shard names an index refers to (it may
    need to fetch the index). Raises FileNotFoundError without config.json
    or weights, or when an index names a shard the repo does not have.
    """
    available = set(repo_files)
    if CONFIG_FILES[0] not in available:
        if MISTRAL_PARAMS_FILE in available and MISTRAL_FILE in available:  # Mistral's own layout
            return [MISTRAL_PARAMS_FILE] + [f for f in TOKENIZER_FILES if f in available] + [MISTRAL_FILE]
        raise FileNotFoundError("repository has no config.json")
    chosen = [f for f in CONFIG_FILES if f in available]
    weights = next((f for f in WEIGHT_FORMATS if f in available), None)
    if weights is None:
        raise FileNotFoundError(f"repository has no weights (looked for {', '.join(WEIGHT_FORMATS)})")
    chosen.append(weights)
    if weights.endswith(".index.json"):
        for shard in sorted(set(shards(weights))):
            if shard not in available:
                raise FileNotFoundError(f"{weights} names shard '{shard}', "
                                        "which the repository does not have")
            chosen.append(shard)
    return chosen


def _looks_like_path(model: str) -> bool:
    """A filesystem path rather than a repo id ("name" or "org/name")."""
    return (model.startswith((".", "/", "~", os.sep))
            or (os.altsep is not None and model.startswith(os.altsep))
            or "\\" in model or model.count("/") > 1
            or (len(model) > 1 and model[1] == ":"))


def _label(repo_id: str, revision: str | None) -> str:
    return f"model '{repo_id}'" + (f" (revision '{revision}')" if revision else "")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def _from_cache(repo_id: str, revision: str | None) -> Path | None:
    """The cached snapshot directory holding config.json, without network access."""
    for name in (CONFIG_FILES[0], MISTRAL_PARAMS_FILE):
        config = hf.try_to_load_from_cache(repo_id, name, revision=revision)
        if isinstance(config, str):
            return Path(config).parent
    return None


def _list_repo(repo_id: str, revision: str | None, label: str,
               cached: Callable[[], Path | None]):
    """The repo's model_info, or `cached()` when the Hub cannot be reached."""
    try:
        return hf.HfApi().model_info(repo_id, revision=revision)
    except GatedRepoError:
        raise PermissionError(f"{label} is gated: accept its terms on huggingface.co and "
                              "log in (`hf auth login`)") from None
    except RepositoryNotFoundError:
        raise FileNotFoundError(f"{label} not found: not a local directory, and no such "
                                "repository on the Hugging Face Hub") from None
    except RevisionNotFoundError:
        raise FileNotFoundError(f"{label} not found: the repository has no such revision") from None
    except Exception as e:  # network down, timeouts, server errors: try the cache
        found = cached()
        if found is not None:
            return found
        raise ConnectionError(f"{label}: cannot reach the Hugging Face Hub ({_first_line(e)}), "
                              "and it is not in the local cache") from None


def _fetcher(repo_id: str, commit: str | None, label: str) -> Callable[[str], Path]:
    """hf_hub_download of one file at `commit`, memoised, with a one-line error."""
    fetched: dict[str, Path] = {}

    def fetch(filename: str) -> Path:
        if filename not in fetched:
            try:
                fetched[filename] = Path(hf.hf_hub_download(repo_id, filename, revision=commit))
            except Exception as e:
                raise ConnectionError(f"{label}: downloading {filename} failed "
                                      f"({_first_line(e)})") from None
        return fetched[filename]

    return fetch


def _download(repo_id: str, revision: str | None) -> Path:
    """List the repo at `revision`, then fetch the chosen files at that commit."""
    label = _label(repo_id, revision)
    info = _list_repo(repo_id, revision, label, lambda: _from_cache(repo_id, revision))
    if isinstance(info, Path):
        return info
    fetch = _fetcher(repo_id, info.sha or revision, label)  # pin the commit so all files match

    def shards(index_file: str) -> list[str]:
        return list(read_index(fetch(index_file)).values())

    files = [s.rfilename for s in (info.siblings or [])]
    try:
        chosen = choose_files(files, shards)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{label}: {e}") from None
    for name in chosen:
        fetch(name)
    return fetch(chosen[0]).parent


# --- tokenizer -------------------------------------------------------------------------


def resolve_tokenizer(model_dir: str | os.PathLike, tokenizer: str | None = None) -> Path:
    """The directory holding the tokenizer.json to use for the model in `model_dir`.

    An explicit `tokenizer` (a directory, a path to a tokenizer.json, or a Hub
    repo id) wins; else the model directory's own tokenizer.json; else
    `EleutherAI/gpt-neox-20b`, the tokenizer of every published Mamba model
    (doc 5.4), which original state-spaces repos do not ship. Only tokenizer
    files are fetched from the Hub (offline: the cache), never weights.
    """
    if tokenizer is not None:
        return _explicit_tokenizer(str(tokenizer))
    model_dir = Path(model_dir)
    if (model_dir / TOKENIZER_FILES[0]).is_file():
        return model_dir
    if config_path(model_dir).name == MISTRAL_PARAMS_FILE:
        # Mistral's models never used gpt-neox's vocabulary: no fallback.
        found = sorted(p.name for p in model_dir.glob("tokenizer.model*")) + \
            sorted(p.name for p in model_dir.glob("tekken*.json"))
        shipped = (f"it ships only {', '.join(found)}, which the `tokenizers` library cannot read"
                   if found else "nor any other tokenizer")
        raise FileNotFoundError(
            f"no tokenizer: {_model_label(model_dir)} (Mistral layout) has no {TOKENIZER_FILES[0]}; "
            f"{shipped}; pass a tokenizer directory or repo id with a {TOKENIZER_FILES[0]}")
    try:
        return _hub_tokenizer(DEFAULT_TOKENIZER)
    except OSError as e:
        raise FileNotFoundError(
            f"no tokenizer: {_model_label(model_dir)} has no {TOKENIZER_FILES[0]}, and the "
            f"default tokenizer '{DEFAULT_TOKENIZER}' is unavailable ({e}); "
            "pass a tokenizer directory or repo id") from None


def _explicit_tokenizer(tokenizer: str) -> Path:
    path = Path(tokenizer).expanduser()
    if path.is_dir():
        if not (path / TOKENIZER_FILES[0]).is_file():
            raise FileNotFoundError(f"tokenizer directory '{tokenizer}' has no "
                                    f"{TOKENIZER_FILES[0]}")
        return path
    if path.is_file():
        if path.name != TOKENIZER_FILES[0]:
            raise FileNotFoundError(f"tokenizer file '{tokenizer}' must be named "
                                    f"{TOKENIZER_FILES[0]}")
        return path.parent
    if _looks_like_path(tokenizer) or tokenizer.endswith(".json"):
        raise FileNotFoundError(f"tokenizer path '{tokenizer}' does not exist")
    try:
        validate_repo_id(tokenizer)
    except HFValidationError:
        raise FileNotFoundError(f"tokenizer '{tokenizer}' not found: not a local path, and not "
                                "a valid Hugging Face repo id") from None
    return _hub_tokenizer(tokenizer)


def _hub_tokenizer(repo_id: str) -> Path:
    """Fetch (offline: look up) only the tokenizer files of a Hub repo."""
    label = f"tokenizer '{repo_id}'"

    def cached() -> Path | None:
        found = hf.try_to_load_from_cache(repo_id, TOKENIZER_FILES[0])
        return Path(found).parent if isinstance(found, str) else None

    if is_offline():
        found = cached()
        if found is None:
            raise FileNotFoundError(f"{label} is not in the Hugging Face cache (offline mode)")
        return found
    info = _list_repo(repo_id, None, label, cached)
    if isinstance(info, Path):
        return info
    files = {s.rfilename for s in (info.siblings or [])}
    if TOKENIZER_FILES[0] not in files:
        raise FileNotFoundError(f"{label}: the repository has no {TOKENIZER_FILES[0]}")
    fetch = _fetcher(repo_id, info.sha, label)
    for name in TOKENIZER_FILES:
        if name in files:
            fetch(name)
    return fetch(TOKENIZER_FILES[0]).parent


def _model_label(model_dir: Path) -> str:
    """'org/name' for a Hugging Face cache snapshot, else the directory itself."""
    for part in model_dir.parts:
        if part.startswith("models--") and part.count("--") >= 2:
            return "'" + part[len("models--"):].replace("--", "/", 1) + "'"
    return f"'{model_dir}'"
