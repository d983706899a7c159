"""Loading Hugging Face objects quietly and strictly from local files: one loader for all.

Every model this project loads — the encoder, the coherence model and its base, a
classifier, a model to pretrain or fine-tune — goes through `load_pretrained`, so each is
loaded the same way: offline, in float32, without transformers' progress bars, and with a
clear `ModelLoadError` when the folder is not a usable model.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ModelLoadError


@contextlib.contextmanager
def quiet_hf_loading():
    """Silence transformers' progress bars and load reports for the duration of a load.

    transformers prints a weight-loading bar and a report of heads it initialised; to a
    user of `bertsearch embed` that is noise on stderr. The previous settings come back after.
    """
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    old_offline = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"  # belt and braces: local_files_only is passed too
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars_enabled:
            hf_logging.enable_progress_bar()
        if old_offline is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old_offline


@dataclass
class Loaded:
    """A model and tokenizer loaded from a folder, and the weights the folder lacked."""

    model: object
    tokenizer: object
    missing_keys: list[str] = field(default_factory=list)


def load_tokenizer(path: str | os.PathLike):
    """The tokenizer saved in a model folder, loaded offline."""
    calm_threads()
    from transformers import AutoTokenizer

    try:
        with quiet_hf_loading():
            return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(_load_message(path, exc)) from exc


def calm_threads() -> None:
    """Make torch's OpenMP threads sleep, not spin, while they wait for work.

    Spinning threads are fastest on an idle machine, but beside other busy processes (a
    server and an indexer on one box) a spinning thread holds a core another thread needs
    and throughput collapses (measured: 11 passages/s instead of 30 on 2 busy cores;
    bench/RESULTS.md, "Under load"). OpenMP reads this when torch is first imported, so it is
    set before that, here, unless the user set it already.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def load_pretrained(path: str | os.PathLike, model_class=None, **config) -> Loaded:
    """Load `model_class` (default: `AutoModel`) and the tokenizer from a local folder.

    Args:
        path: a folder holding config.json, weights and tokenizer files.
        model_class: a transformers class with `from_pretrained` (`BertForPreTraining`, ...).
        config: overrides passed to `from_pretrained` (e.g. `num_labels`).

    Raises:
        ModelLoadError: the folder is not a loadable model of that class.
    """
    calm_threads()
    import torch

    if model_class is None:
        from transformers import AutoModel as model_class
    tokenizer = load_tokenizer(path)
    try:
        with quiet_hf_loading():
            model, info = model_class.from_pretrained(
                str(path), local_files_only=True, dtype=torch.float32,
                output_loading_info=True, **config)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(_load_message(path, exc)) from exc
    return Loaded(model, tokenizer, list(info.get("missing_keys", [])))


def _load_message(path, exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return (f"Could not load a model from '{Path(path)}': {first}. The folder needs "
            f"config.json, weights and tokenizer files of a BERT-style model.")


def pick_device(device: str | None = None) -> str:
    """`cuda` when a GPU is present and no device was asked for, else what was asked or `cpu`."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
