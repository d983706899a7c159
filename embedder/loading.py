"""Loading Hugging Face objects quietly and strictly from local files."""

from __future__ import annotations

import contextlib
import os


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


def pick_device(device: str | None = None) -> str:
    """`cuda` when a GPU is present and no device was asked for, else what was asked or `cpu`."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
