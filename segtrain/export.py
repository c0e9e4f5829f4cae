"""Export of a checkpoint's network, as segtrain-export's config says (configs/export.yaml): export_checkpoint(cfg).

Exports a checkpoint's network to ONNX (torch.onnx's dynamo exporter) with the batch, height and width dynamic,
then runs the file with onnxruntime at the example size and at another size and checks that it matches PyTorch.
Networks that mirror an image out to the sizes they take (U-Net, DeconvNet, FRRN: their `input_sizes`, e.g. 16k+4
px for the valid U-Net) export with dynamic sizes among those only, traced at the nearest such size to height= and
width=, and say so; `dynamic=false` exports one fixed height x width (any size: the mirroring is in the graph).
OUT.onnx.log beside the file gets the exporter's and onnxruntime's messages; a failed export leaves nothing
beside OUT (its messages stay in a temporary file its error line names).
"""
import contextlib
import logging
import os
import re
import shutil
import sys
import tempfile
import traceback
from pathlib import Path

from .config import app_overrides
from .errors import SegtrainError, one_line
from .outputs import Manifest, require_creatable

log = logging.getLogger("segtrain")
MAX_SIZE = 8192  # the largest height and width a dynamic export takes


@contextlib.contextmanager
def output_into(path: Path):
    """Everything written to this process's stdout and stderr meanwhile, by Python (print, logging to the console)
    and by C++ libraries (onnxruntime) alike, appended to the file `path` instead: the exporter's and
    onnxruntime's progress messages."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(path, "a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
            os.dup2(f.fileno(), 1)
            os.dup2(f.fileno(), 2)
            yield
    finally:
        for fd, saved_fd in ((1, saved[0]), (2, saved[1])):
            os.dup2(saved_fd, fd)
            os.close(saved_fd)


def dynamic_shapes(sizes):
    """torch.export's dynamic dimensions of the input: any batch, and heights and widths the network takes
    (`sizes`, an InputSizes: offset + multiple x k >= minimum, up to MAX_SIZE)."""
    import torch

    Dim = torch.export.Dim
    if sizes.any_size():
        return {"x": {0: Dim("batch", min=1, max=1024), 2: Dim("height", min=1, max=MAX_SIZE),
                      3: Dim("width", min=1, max=MAX_SIZE)}}
    low, high = -(-(sizes.minimum - sizes.offset) // sizes.multiple), (MAX_SIZE - sizes.offset) // sizes.multiple
    steps = [Dim(f"{name}_steps", min=low, max=high) for name in ("height", "width")]
    return {"x": {0: Dim("batch", min=1, max=1024), 2: sizes.multiple * steps[0] + sizes.offset,
                  3: sizes.multiple * steps[1] + sizes.offset}}


def check_onnx(path, model, inputs, tolerance: float) -> float:
    """The largest difference between onnxruntime's and PyTorch's outputs over `inputs`, relative to the output's
    range; an error if onnxruntime cannot run it or it exceeds `tolerance`."""
    import numpy as np
    import onnxruntime
    import torch

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for x in inputs:
        try:
            got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        except Exception as e:  # noqa: BLE001 - onnxruntime's own error kinds
            raise SegtrainError(f"onnxruntime cannot run it at {tuple(x.shape)} ({type(e).__name__}: "
                                f"{str(e).strip().splitlines()[0][:160]})") from None
        with torch.no_grad():
            want = model(x).numpy()
        if got.shape != want.shape:
            raise SegtrainError(f"onnxruntime gives shape {got.shape} for input {tuple(x.shape)}, PyTorch "
                                f"{want.shape}")
        worst = max(worst, float(np.abs(got - want).max() / max(1e-6, float(np.abs(want).max()))))
    if worst > tolerance:
        raise SegtrainError(f"onnxruntime differs from PyTorch by {worst:.2e} of the output range (tolerance "
                            f"{tolerance:.0e})")
    return worst


def export_checkpoint(cfg) -> Path:
    """Export as the composed segtrain-export config says; the ONNX file's path."""
    if cfg.format != "onnx":
        raise SegtrainError(f"format={cfg.format}: only onnx is supported")
    if cfg.height < 1 or cfg.width < 1:
        raise SegtrainError(f"height={cfg.height} width={cfg.width}: expected whole numbers of pixels >= 1")
    height, width, dynamic = cfg.height, cfg.width, cfg.dynamic
    import torch

    from .checkpoint import restore
    from .data import checkpoint_dataset_info

    out = Path(cfg.out or Path(cfg.ckpt).with_suffix(".onnx"))
    check_output(out, cfg.ckpt)
    log.info("reading %s", cfg.ckpt)
    train_cfg, model, state = restore(cfg.ckpt, app_overrides(cfg))
    name = train_cfg.model.name
    if train_cfg.model.get("crf"):
        raise SegtrainError(f"ckpt={cfg.ckpt}: model.crf={train_cfg.model.crf} builds its CRF lattice from each "
                            "image's pixels (sizes known only at run time), which ONNX cannot express; evaluate "
                            "and predict with segtrain-eval and segtrain-predict")
    channels = sum(checkpoint_dataset_info(state, train_cfg)["input_channels"])
    sizes = model.input_sizes
    if dynamic and not sizes.any_size():
        height, width = sizes.fitting(height), sizes.fitting(width)
        shape = f"dynamic batch; heights and widths of {sizes} only"
        log.info("%s takes heights and widths of %s as they are and mirrors others out to them in Python, which "
                 "ONNX cannot follow: the file takes those only (its input shape says so), traced at %dx%d; "
                 "dynamic=false exports any one size", name, sizes, height, width)
    else:
        shape = "dynamic batch, height and width" if dynamic else f"fixed {height}x{width}"
    inputs = [torch.randn(1, channels, height, width)]
    if dynamic:  # another batch and size, which a graph fixed to the example's would not take
        other = [sizes.fitting(size // 2 + 7) for size in (height, width)]
        inputs.append(torch.randn(2, channels, *(o if o != size else o + sizes.multiple
                                                 for o, size in zip(other, (height, width)))))
    created = [folder for folder in (out.parent, *out.parent.parents) if not folder.exists()]
    out.parent.mkdir(parents=True, exist_ok=True)
    # into a folder of its own beside `out`, moved into place only once checked: a failed export leaves
    # nothing, and an earlier export there stays whole until then (its .onnx.data is named by the .onnx)
    staging = Path(tempfile.mkdtemp(prefix=".segtrain-export-", dir=out.parent))
    staged, messages = staging / out.name, staging / f"{out.name}.log"
    messages.write_text(f"# segtrain-export {cfg.ckpt} to {out}: the exporter's and onnxruntime's messages\n")
    try:
        try:
            log.info("exporting %s to %s (%s)", name, out, shape)
            with output_into(messages), torch.no_grad():
                torch.onnx.export(model, (inputs[0],), str(staged), input_names=["image"], output_names=["scores"],
                                  dynamic_shapes=dynamic_shapes(sizes) if dynamic else None, dynamo=True,
                                  verbose=False)
        except Exception as e:  # noqa: BLE001 - the exporter raises many kinds; the first line says which
            cause = e  # torch.onnx wraps torch.export's error, which says what failed
            while cause.__cause__ is not None:
                cause = cause.__cause__
            text = re.sub(r"\x1b\[[0-9;]*m", "", one_line(cause))[:200]  # its colour codes off
            raise export_error(f"cannot export {name} to ONNX ({text})", e, messages, dynamic, sizes, height,
                               width) from None
        try:
            log.info("checking %s with onnxruntime at %s", out.name, " and ".join(str(tuple(x.shape)) for x in inputs))
            with output_into(messages):
                worst = check_onnx(staged, model, inputs, tolerance=1e-3)
        except SegtrainError as e:
            raise export_error(f"{out.name}: {e}", e, messages, dynamic, sizes, height, width) from None
        files = sorted(p.name for p in staging.iterdir())
        Manifest(out.parent, MANIFEST).record(files)
        for file in files:
            os.replace(staging / file, out.parent / file)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in created:  # the folders made for `out`, innermost first, when a failure left them empty
            with contextlib.suppress(OSError):
                folder.rmdir()
    print(f"wrote {', '.join(str(out.parent / file) for file in files)} ({shape}); onnxruntime matches PyTorch on "
          f"{' and '.join(str(tuple(x.shape)) for x in inputs)} within {worst:.1e} of the output range")
    return out


def export_error(what: str, error: BaseException, messages: Path, dynamic: bool, sizes, height: int,
                 width: int) -> SegtrainError:
    """A failed export's line: what failed, for a dynamic export the fixed-size one to run instead (at a size the
    network takes), and the temporary file that keeps the exporter's messages and the error's traceback (nothing
    stays beside OUT)."""
    hint = (f"; export one size instead: dynamic=false height={sizes.fitting(height)} width={sizes.fitting(width)}"
            if dynamic else "")
    handle, path = tempfile.mkstemp(prefix="segtrain-export-", suffix=".log")
    with os.fdopen(handle, "w") as kept:
        kept.write(messages.read_text() if messages.is_file() else "")
        kept.write("".join(traceback.format_exception(error)))
    return SegtrainError(f"{what}{hint} (the exporter's messages: {path})")


MANIFEST = ".segtrain-export.json"  # the files segtrain-export wrote into a folder


def check_output(out: Path, ckpt: str) -> None:
    """Before any work: `out` is no checkpoint (this one or any .pt), and neither it nor its .data and .log files
    is a file segtrain-export did not write (its manifest lists those); its folder can be made and written in."""
    if out.resolve() == Path(ckpt).resolve() or out.suffix == ".pt":
        raise SegtrainError(f"out={out}: would write the ONNX file over a checkpoint; give an out= ending in .onnx")
    if out.is_dir():
        raise SegtrainError(f"out={out} is a folder; give a file name (e.g. {out / 'model.onnx'})")
    foreign = Manifest(out.parent, MANIFEST).foreign([out.name, f"{out.name}.data", f"{out.name}.log"])
    if foreign:
        raise SegtrainError(f"out={out}: {out.parent / foreign[0]} exists and segtrain-export did not write it; "
                            "choose another out= (nothing was written)")
    require_creatable(out.parent, "out")
