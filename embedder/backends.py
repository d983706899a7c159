"""Inference backends for the encoder: exact PyTorch, or ONNX Runtime (fp32 or int8).

Every backend maps `(input_ids, attention_mask, token_type_ids)` to the last hidden states;
pooling and normalisation stay in the encoder, so the backends differ only in speed and
(for int8) in a small, measured loss of precision.

ONNX models are built from the local PyTorch model — no download — with PyTorch's ONNX
exporter, ONNX Runtime's BERT graph optimiser and its dynamic per-channel int8 quantiser,
once per model, into a cache folder (`$BERTSEARCH_CACHE`, else `~/.cache/bertsearch`),
each file written to a temporary name and renamed into place.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from pathlib import Path

from .errors import EmbedderError, InvalidInputError
from .packed import can_pack, packed_hidden_states

BACKENDS = ("torch", "onnx", "onnx-int8")
DEFAULT_BACKEND = "torch"
_BUILD_LOCK = threading.Lock()


def check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise InvalidInputError(f"backend must be one of {', '.join(BACKENDS)}; got {name!r}.")
    return name


def cache_dir() -> Path:
    """Where built ONNX models are kept (read when called, never at import)."""
    root = os.environ.get("BERTSEARCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "bertsearch")
    return Path(root)


class TorchBackend:
    """The PyTorch model itself: exact. A plain BERT in eval mode runs packed, without
    padding (`packed.py`); `packs` says whether it does."""

    name = "torch"

    def __init__(self, model, device: str):
        self.model = model
        self.device = device
        self._packable = can_pack(model)

    @property
    def packs(self) -> bool:
        return self._packable and not self.model.training  # the packed pass has no dropout

    def packed(self, batch):
        """Last hidden states of a `PackedBatch`, `(tokens, hidden)`."""
        import torch

        with torch.inference_mode():
            return packed_hidden_states(self.model, batch)

    def __call__(self, input_ids, attention_mask, token_type_ids):
        import torch

        with torch.inference_mode():
            return self.model(input_ids=input_ids.to(self.device),
                              attention_mask=attention_mask.to(self.device),
                              token_type_ids=token_type_ids.to(self.device)).last_hidden_state


class OnnxBackend:
    """An ONNX Runtime session over an exported model (fp32 optimised, or int8)."""

    packs = False

    def __init__(self, path: Path, name: str, threads: int | None = None,
                 spin: bool = False):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or _physical_cores()
        options.inter_op_num_threads = 1
        # idle threads must not spin: they would steal the cores FAISS and the server need.
        # A session for lone queries may (`spin`): its runs are ~4 ms, and waking sleeping
        # threads for each of a run's ~200 operators costs a third of that
        # (bench/RESULTS.md, "Query latency")
        options.add_session_config_entry("session.intra_op.allow_spinning",
                                         "1" if spin else "0")
        self.session = ort.InferenceSession(str(path), options,
                                            providers=["CPUExecutionProvider"])
        self.name = name
        self.path = path

    def __call__(self, input_ids, attention_mask, token_type_ids):
        import torch

        hidden = self.session.run(["last_hidden_state"], {
            "input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy(),
            "token_type_ids": token_type_ids.numpy()})[0]
        return torch.from_numpy(hidden)


def make_backend(name: str, model, fingerprint: str, device: str, config):
    """The backend `name` for a loaded PyTorch `model` (ONNX files built on first use)."""
    check_backend(name)
    if name == "torch":
        return TorchBackend(model, device)
    if not device.startswith("cpu"):
        raise InvalidInputError("The ONNX backends run on the CPU; use --backend torch on a GPU.")
    return OnnxBackend(onnx_file(name, model, fingerprint, config), name)


def onnx_cached(name: str, fingerprint: str) -> bool:
    """Whether backend `name`'s ONNX file for this model is built already."""
    folder = cache_dir() / "onnx" / fingerprint
    return (folder / ("model-int8.onnx" if name == "onnx-int8"
                      else "model-optimised.onnx")).exists()


def onnx_file(name: str, model, fingerprint: str, config) -> Path:
    """The ONNX file for backend `name` of this model, building what is missing."""
    folder = cache_dir() / "onnx" / fingerprint
    exported = folder / "model.onnx"
    optimised = folder / "model-optimised.onnx"
    quantised = folder / "model-int8.onnx"
    with _BUILD_LOCK:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            wanted = quantised if name == "onnx-int8" else optimised
            if not wanted.exists():  # the first time only: it takes a while, say why
                print(f"bertsearch: exporting the model to ONNX for the {name} backend "
                      f"(once; cached in {folder})", file=sys.stderr, flush=True)
            if not exported.exists():
                _atomic(exported, lambda tmp: _export(model, tmp))
            if not optimised.exists():
                _atomic(optimised, lambda tmp: _optimise(exported, tmp, config))
            if name == "onnx-int8" and not quantised.exists():
                _atomic(quantised, lambda tmp: _quantise(optimised, tmp))
        except ImportError as exc:
            raise EmbedderError(f"The {name} backend needs onnxruntime, onnx and onnxscript: "
                                f"pip install onnxruntime onnx onnxscript ({exc}).") from exc
    return quantised if name == "onnx-int8" else optimised


def _export(model, target: Path) -> None:
    import contextlib
    import io
    import warnings

    import torch

    class LastHiddenState(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    ids = torch.tensor([[101, 2023, 2003, 1037, 3231, 102], [101, 2023, 102, 0, 0, 0]])
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {n: {0: "batch", 1: "sequence"} for n in names + ["last_hidden_state"]}
    model = model.to("cpu").eval()
    # the exporter prints progress to stdout, which would corrupt `bertsearch embed` output
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(LastHiddenState(model),
                          (ids, (ids != 0).long(), torch.zeros_like(ids)), str(target),
                          input_names=names, output_names=["last_hidden_state"],
                          dynamic_axes=axes, opset_version=18, dynamo=True, verbose=False,
                          external_data=False)


def _optimise(source: Path, target: Path, config) -> None:
    from onnxruntime.transformers import optimizer

    optimised = optimizer.optimize_model(
        str(source), model_type="bert", num_heads=config.num_attention_heads,
        hidden_size=config.hidden_size, opt_level=1)
    optimised.save_model_to_file(str(target))


def _quantise(source: Path, target: Path) -> None:
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # it logs advice about static pre-processing we do not need
    try:
        quantize_dynamic(str(source), str(target), per_channel=True,
                         weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)


def _atomic(target: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}-", suffix=".onnx")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _physical_cores() -> int:
    return max(1, (os.cpu_count() or 2))

