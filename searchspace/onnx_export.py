"""A network as an ONNX model, checked against PyTorch with onnxruntime; and onnxruntime as a second latency
backend (`onnxruntime_runner`).

Every export is run by onnxruntime (CPUExecutionProvider) on the same input as PyTorch and kept only when
every output is within `TOLERANCE`; a network whose kernel cannot export, or exports wrong, is refused
with a one-line NasError naming the token mixer's kernel, never a traceback or a wrong file.

The exporter is torch.export's (`dynamo=True`, torch's default since 2.9; the TorchScript one is
deprecated): it takes our sliding-kernel custom ops through their ONNX translations
(`kernels.onnx_translations`), and writes grid_sample (deformable points) as GridSample and fused
attention as MatMul/Softmax, both in any opset from 18 (its lowest) to 23.

Imports torch, onnxruntime (onnx and onnxscript through torch.onnx) and searchspace only; never trials,
dashboards or nas.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from .errors import NasError
from .kernels import onnx_translations
from .mixer import TokenMixer

TOLERANCE = 1e-4  # largest absolute difference allowed between onnxruntime's and PyTorch's outputs
DEFAULT_OPSET = 20  # torch.onnx's default; GridSample needs 16, torch's exporter writes 18 to 23
OPSETS = range(18, 24)

__all__ = ["DEFAULT_OPSET", "OPSETS", "TOLERANCE", "OnnxModel", "export_spec", "kernel_name", "onnxruntime_runner", "to_onnx"]


@dataclass(frozen=True)
class OnnxModel:
    """An exported network that onnxruntime ran within TOLERANCE of PyTorch: the serialized model, its opset,
    the input it was checked on and the largest absolute difference of its outputs."""

    data: bytes
    opset: int
    input_shape: tuple[int, ...]
    max_abs_diff: float

    def session(self, threads: int | None = None):
        """An onnxruntime session on CPU; `threads` for its intra-op pool (None: onnxruntime's default)."""
        return _session(self.data, threads)

    def save(self, path: str | Path) -> None:
        try:
            Path(path).write_bytes(self.data)
        except OSError as exc:
            raise NasError(f"cannot write {path}: {exc.strerror or exc}") from None


def to_onnx(model: nn.Module, example: Tensor, *, opset: int = DEFAULT_OPSET, name: str = "the network") -> OnnxModel:
    """`model` (in eval mode for the export, restored after) as an ONNX model for inputs shaped like `example`,
    checked with onnxruntime on `example`."""
    if opset not in OPSETS:
        raise NasError(f"opset {opset} is not one torch's ONNX exporter writes ({OPSETS.start}..{OPSETS.stop - 1})")
    training = model.training
    model.eval()
    try:
        try:
            exported = _export_checked(model, example, opset)
        except _Refused as whole:
            culprit = _culprit(model, example.dtype, opset)
            if culprit is None:
                raise NasError(f"{name} cannot be exported to ONNX: {whole}") from None
            kernel, why = culprit
            raise NasError(f"{name} cannot be exported to ONNX: the token mixer's {kernel} {why}") from None
    finally:
        model.train(training)
    return exported


def export_spec(spec, path: str | Path, *, img_size: int = 224, num_classes: int = 1000, batch: int = 1,
                opset: int = DEFAULT_OPSET, seed: int = 0) -> OnnxModel:
    """Build a spec (preset name, spec or config file, ArchSpec) with seeded initial weights, export it for
    (batch, 3, img_size, img_size) images, check it, and write it to `path`."""
    from .model import as_spec, build_model

    spec = as_spec(spec)
    torch.manual_seed(seed)
    model = build_model(spec, num_classes=num_classes, img_size=img_size)
    example = torch.randn(batch, 3, img_size, img_size)
    exported = to_onnx(model, example, opset=opset, name=spec.name or "the spec")
    exported.save(path)
    return exported


def onnxruntime_runner(model: nn.Module, example_input: Tensor, threads: int) -> Callable[[], list]:
    """One forward pass of `model` on `example_input` in onnxruntime (CPU, `threads` intra-op threads), as a
    callable for a latency measurement; the model is exported and checked first (to_onnx)."""
    session = to_onnx(model, example_input).session(threads)
    feed = {session.get_inputs()[0].name: example_input.detach().cpu().numpy()}
    return lambda: session.run(None, feed)


# --- export and check ------------------------------------------------------------------------------------------
class _Refused(Exception):
    """The exporter failed, or onnxruntime disagrees with PyTorch: the reason, in one line."""


def _export_checked(module: nn.Module, example: Tensor, opset: int) -> OnnxModel:
    data = _export(module, example, opset)
    try:
        session = _session(data, None)
        got = session.run(None, {session.get_inputs()[0].name: example.detach().cpu().numpy()})
    except Exception as exc:  # noqa: BLE001  onnxruntime rejects the graph: a reason, not a crash
        raise _Refused(f"is not run by onnxruntime ({_first_line(exc)})") from None
    with torch.no_grad():
        expected = module(example)
    expected = [expected] if isinstance(expected, Tensor) else list(expected)
    if len(got) != len(expected) or any(tuple(g.shape) != tuple(e.shape) for g, e in zip(got, expected)):
        raise _Refused("gives outputs of other shapes in onnxruntime than in PyTorch")
    diff = max(float((torch.from_numpy(g) - e.detach().cpu()).abs().max()) for g, e in zip(got, expected))
    if not diff <= TOLERANCE:  # NaN included
        raise _Refused(f"differs from PyTorch by {diff:.2g} in onnxruntime (tolerance {TOLERANCE:g})")
    return OnnxModel(data, opset, tuple(example.shape), diff)


def _export(module: nn.Module, example: Tensor, opset: int) -> bytes:
    # The math backend of fused attention: CPU's flash kernel returns its output in another memory layout
    # than the exporter's second trace assumes, so a reshape traced as a free view fails there. No
    # optimize pass: onnxruntime folds and fuses the graph as it loads it, and torch's pass (onnxscript's
    # rewrite rules) takes minutes on the sliding kernels' unrolled K x K loops.
    from torch.nn.attention import SDPBackend, sdpa_kernel

    try:
        with _quiet(), sdpa_kernel(SDPBackend.MATH):
            program = torch.onnx.export(
                module, (example,), dynamo=True, opset_version=opset, custom_translation_table=onnx_translations(),
                external_data=False, optimize=False, verbose=False,
            )
        return program.model_proto.SerializeToString()
    except Exception as exc:  # noqa: BLE001  any exporter failure is a reason to refuse the network, in one line
        raise _Refused(f"fails in torch.onnx.export ({_first_line(exc)})") from None


def _culprit(model: nn.Module, dtype, opset: int) -> tuple[str, str] | None:
    """The first token mixer kernel that, exported alone on its own map, fails: (kernel, why); None if none does."""
    seen = set()
    for module in model.modules():
        if not isinstance(module, TokenMixer):
            continue
        kernel = kernel_name(module)
        if kernel in seen:
            continue
        seen.add(kernel)
        alone = torch.randn(1, *module.feature_size, module.dim, dtype=dtype)
        try:
            _export_checked(_Mixing(module), alone, opset)
        except _Refused as exc:
            return kernel, str(exc)
    return None


def kernel_name(mixer: TokenMixer) -> str:
    """The kernel a mixer runs, as a user and a developer look for it: 'sliding/inhomogeneous kernel (Sliding._per_pixel)'."""
    conn = mixer.connectivity
    return f"{mixer.spec.connectivity}/{mixer.spec.dynamic} kernel ({type(conn).__name__}.{conn._kernel.__name__})"


class _Mixing(nn.Module):
    """A token mixer's aggregation alone (before W_out), channels-last in and out."""

    def __init__(self, mixer: TokenMixer):
        super().__init__()
        self.mixer = mixer

    def forward(self, x: Tensor) -> Tensor:
        return self.mixer.mix(x)


def _session(data: bytes, threads: int | None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def _first_line(exc: BaseException) -> str:
    """The innermost cause of an exporter error, in one line (its messages run to pages)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]


@contextlib.contextmanager
def _quiet():
    """The exporter prints its progress and warns at length; a user sees the outcome only."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
