"""Export a SED model to ONNX (and OpenVINO when it is installed) and run it on a CPU.

The exported graph is the network after the mel front end: input ``mel`` (batch, 1, n_mels,
n_frames), outputs ``clip_logits`` (batch, k), ``frame_logits`` and ``frame_attention``
(batch, t', k); the batch axis is dynamic. The front end (torchaudio's STFT, which the ONNX
exporter cannot take) runs in torch before it, the same module as in training.

:class:`ExportedSed` runs it with ONNX Runtime (``engine="onnxruntime"``) or OpenVINO
(``engine="openvino"``), one thread per session (run several sessions in worker processes, one
per core), every clip of a file in one batch: a one-minute file → (12, n_classes).
onnx, onnxruntime and openvino are imported only here, when used.
"""
from __future__ import annotations

import copy
import importlib.util
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from birdclef.errors import BackboneUnavailable, InferenceError
from birdclef.io import atomic_path
from birdclef.models.sed.config import SedConfig
from birdclef.models.sed.frontend import MelFrontEnd, n_mel_frames
from birdclef.models.sed.infer import file_clips, outputs_to_windows
from birdclef.models.sed.model import SedModel

ONNX_OPSET = 17
OUTPUT_NAMES = ("clip_logits", "frame_logits", "frame_attention")
ENGINES = ("onnxruntime", "openvino")
# f32 inference: on a bf16-capable CPU OpenVINO would otherwise run in bf16 and drift from ONNX Runtime
OPENVINO_CPU_CONFIG = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}


class _MelToOutputs(nn.Module):
    def __init__(self, model: SedModel):
        super().__init__()
        self.backbone, self.head = model.backbone, model.head

    def forward(self, mel: torch.Tensor):
        clip, frame, att, _ = self.head(self.backbone.forward_features(mel))
        return clip, frame, att


def export_onnx(model: SedModel, config: SedConfig, path: str | Path) -> Path:
    """Write ``model`` (after its front end) to ``path`` as ONNX with a dynamic batch axis (atomic)."""
    model = copy.deepcopy(model).cpu().eval()  # the caller's model stays where and as it was
    mel = torch.zeros(2, 1, config.n_mels, n_mel_frames(config.clip_samples, config.hop_length))
    dynamic = {"mel": {0: "batch"}, **{name: {0: "batch"} for name in OUTPUT_NAMES}}
    with atomic_path(path, ".onnx") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notice
        torch.onnx.export(_MelToOutputs(model), (mel,), str(tmp), input_names=["mel"], output_names=list(OUTPUT_NAMES),
                          dynamic_axes=dynamic, opset_version=ONNX_OPSET, dynamo=False)
    return Path(path)


def openvino_available() -> bool:
    return importlib.util.find_spec("openvino") is not None


def export_openvino(onnx_path: str | Path, xml_path: str | Path | None = None) -> Path | None:
    """Convert an exported ONNX file to OpenVINO IR (``.xml`` + ``.bin`` beside it) → the .xml, or
    None when openvino is not installed."""
    if not openvino_available():
        return None
    import openvino as ov

    xml = Path(xml_path) if xml_path is not None else Path(onnx_path).with_suffix(".xml")
    ov.save_model(ov.convert_model(str(onnx_path)), str(xml))
    return xml


class ExportedSed:
    """An exported SED model on the CPU: ``predict_file(path)`` → (n_windows, n_classes) probabilities.

    ``path``: the .onnx file (ONNX Runtime) or the .onnx / .xml (OpenVINO); ``threads``: per session.
    """

    def __init__(self, path: str | Path, config: SedConfig, *, engine: str = "onnxruntime", threads: int = 1):
        if engine not in ENGINES:
            raise ValueError(f"unknown engine {engine!r}; known: {', '.join(map(repr, ENGINES))}")
        self.config, self.engine, self.path = config, engine, Path(path)
        self.frontend = MelFrontEnd(config).eval()
        if engine == "onnxruntime":
            from birdclef.backbones import open_onnx

            self._session = open_onnx(path, num_threads=threads)
        else:
            if not openvino_available():
                raise BackboneUnavailable(f"running {path} with OpenVINO needs openvino (pip install openvino)")
            import openvino as ov

            core = ov.Core()
            self._compiled = core.compile_model(str(path), "CPU", OPENVINO_CPU_CONFIG | {"INFERENCE_NUM_THREADS": int(threads)})

    @torch.inference_mode()
    def mel(self, clips: np.ndarray) -> np.ndarray:
        """(n, clip_samples) → (n, 1, n_mels, n_frames) float32, the exported graph's input."""
        return self.frontend(torch.from_numpy(np.ascontiguousarray(clips, np.float32))).numpy()

    def outputs_from_mel(self, mel: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        mel = np.ascontiguousarray(mel, np.float32)
        try:
            if self.engine == "onnxruntime":
                clip, frame, att = self._session.run(list(OUTPUT_NAMES), {"mel": mel})
            else:
                result = self._compiled(mel)
                clip, frame, att = (result[self._compiled.output(i)] for i in range(3))
        except Exception as err:  # the engines' own error types (ORT's Fail, InvalidArgument) are no RuntimeError
            raise InferenceError(f"{self.engine} failed on {self.path.name} (input {mel.shape}): "
                                 f"{type(err).__name__}: {err}") from err
        return np.asarray(clip), np.asarray(frame), np.asarray(att)

    def outputs(self, clips: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(n, clip_samples) → (clip logits (n, k), frame logits (n, t', k), attention (n, t', k))."""
        return self.outputs_from_mel(self.mel(clips))

    def predict_clips(self, clips: np.ndarray, count: int) -> np.ndarray:
        """A file's clips (one batch) → (count, n_classes) window probabilities."""
        _, frame, att = self.outputs(clips)
        return outputs_to_windows(frame, att, self.config, count)

    def predict_file(self, path: str | Path) -> np.ndarray:
        """One soundscape → (n_windows, n_classes) probabilities; all its clips in one batch."""
        clips, count = file_clips(path, self.config)
        return self.predict_clips(clips, count)

    def __call__(self, path: str | Path) -> np.ndarray:
        return self.predict_file(path)
