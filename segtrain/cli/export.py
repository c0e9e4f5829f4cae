"""`segtrain-export ckpt=PATH [format=onnx] [out=FILE.onnx] [height=512] [width=512] [dynamic=true]`: a Hydra app
(configs/export.yaml; `--help`, `--cfg job`).

Exports a checkpoint's network to ONNX (torch.onnx's dynamo exporter) with the batch, height and width dynamic,
then runs the file with onnxruntime at the example size and at another size and checks that it matches PyTorch.
Networks whose padding depends on the input size in Python (U-Net's overlap-tile mirroring, DeconvNet's mirroring
to 224, FRRN's padding to a multiple of its pooling) export with dynamic=false at the given height and width only.
"""
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import hydra

from ..config import config_dir, register_configs
from ..errors import SegtrainError
from . import checkpoint_command, compose_app, exit_with_error, stored_overrides

register_configs()
log = logging.getLogger("segtrain")


def check_onnx(path, model, inputs, tolerance: float) -> float:
    """The largest difference between onnxruntime's and PyTorch's outputs over `inputs`, relative to the output's
    range; an error if it exceeds `tolerance`."""
    import numpy as np
    import onnxruntime
    import torch

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for x in inputs:
        try:
            got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        except Exception as e:  # noqa: BLE001 - onnxruntime's own error kinds
            raise SegtrainError(f"{path.name}: onnxruntime cannot run it at {tuple(x.shape)} ({type(e).__name__}: "
                                f"{str(e).strip().splitlines()[0][:160]}); the network's padding depends on the "
                                "input size: export with dynamic=false at height= and width=") from None
        with torch.no_grad():
            want = model(x).numpy()
        if got.shape != want.shape:
            raise SegtrainError(f"{path}: onnxruntime gives shape {got.shape} for input {tuple(x.shape)}, "
                                f"PyTorch {want.shape}")
        worst = max(worst, float(np.abs(got - want).max() / max(1e-6, float(np.abs(want).max()))))
    if worst > tolerance:
        raise SegtrainError(f"{path}: onnxruntime differs from PyTorch by {worst:.2e} of the output range "
                            f"(tolerance {tolerance:.0e})")
    return worst


def export_checkpoint(cfg) -> Path:
    """Export as the composed segtrain-export config says; the ONNX file's path."""
    if cfg.format != "onnx":
        raise SegtrainError(f"format={cfg.format}: only onnx is supported")
    if cfg.height < 1 or cfg.width < 1:
        raise SegtrainError(f"height={cfg.height} width={cfg.width}: expected whole numbers of pixels >= 1")
    height, width, dynamic = cfg.height, cfg.width, cfg.dynamic
    import torch

    from ..checkpoint import restore
    from ..data import checkpoint_dataset_info

    out = Path(cfg.out or Path(cfg.ckpt).with_suffix(".onnx"))
    check_output(out, cfg.ckpt)
    log.info("reading %s", cfg.ckpt)
    train_cfg, model, state = restore(cfg.ckpt, stored_overrides(cfg))
    if train_cfg.model.get("crf"):
        raise SegtrainError(f"ckpt={cfg.ckpt}: model.crf={train_cfg.model.crf} builds its CRF lattice from each "
                            "image's pixels (sizes known only at run time), which ONNX cannot express; evaluate "
                            "and predict with segtrain-eval and segtrain-predict")
    info = checkpoint_dataset_info(state, train_cfg)
    channels = sum(info["input_channels"])
    example = torch.randn(1, channels, height, width)
    shapes = None
    if dynamic:
        shapes = {"x": {0: torch.export.Dim("batch", min=1, max=1024), 2: torch.export.Dim("height", min=1, max=8192),
                        3: torch.export.Dim("width", min=1, max=8192)}}
    log.info("exporting %s to %s (%s)", train_cfg.model.name, out,
             "dynamic batch, height and width" if dynamic else f"fixed {height}x{width}")
    # into a folder of its own beside `out`, moved into place only once checked: a failed export leaves
    # nothing, and an earlier export there stays whole until then (its .onnx.data is named by the .onnx)
    staging = Path(tempfile.mkdtemp(prefix=".segtrain-export-", dir=out.parent))
    try:
        staged = staging / out.name
        try:
            with torch.no_grad():
                torch.onnx.export(model, (example,), str(staged), input_names=["image"], output_names=["scores"],
                                  dynamic_shapes=shapes, dynamo=True, verbose=False)
        except Exception as e:  # noqa: BLE001 - the exporter raises many kinds; the first line says which
            hint = " Try dynamic=false with height= and width=." if dynamic else ""
            raise SegtrainError(f"cannot export {train_cfg.model.name} to ONNX ({type(e).__name__}: "
                                f"{str(e).strip().splitlines()[0][:200]}).{hint}") from None
        inputs = [example] + ([torch.randn(2, channels, height // 2 + 7, width // 2 + 3)] if dynamic else [])
        log.info("checking %s with onnxruntime at %s", out.name, " and ".join(str(tuple(x.shape)) for x in inputs))
        worst = check_onnx(staged, model, inputs, tolerance=1e-3)
        files = sorted(p.name for p in staging.iterdir())
        record_written(out.parent, files)
        for name in files:
            os.replace(staging / name, out.parent / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    sizes = " and ".join(f"{tuple(x.shape)}" for x in inputs)
    print(f"wrote {', '.join(str(out.parent / name) for name in files)} "
          f"({'dynamic batch, height and width' if dynamic else f'fixed {height}x{width}'}); "
          f"onnxruntime matches PyTorch on {sizes} within {worst:.1e} of the output range")
    return out


MANIFEST = ".segtrain-export.json"  # the files segtrain-export wrote into a folder


def written_before(folder: Path) -> set:
    try:
        return set(json.loads((folder / MANIFEST).read_text()))
    except (OSError, ValueError):
        return set()


def record_written(folder: Path, names) -> None:
    (folder / MANIFEST).write_text(json.dumps(sorted(written_before(folder) | set(names))))


def check_output(out: Path, ckpt: str) -> None:
    """Before any work: `out` is no checkpoint (this one or any .pt), and neither it nor its .data file is a file
    segtrain-export did not write (its manifest lists those); the folder can take files."""
    if out.resolve() == Path(ckpt).resolve() or out.suffix == ".pt":
        raise SegtrainError(f"out={out}: would write the ONNX file over a checkpoint; give an out= ending in .onnx")
    if out.is_dir():
        raise SegtrainError(f"out={out} is a folder; give a file name (e.g. {out / 'model.onnx'})")
    ours = written_before(out.parent)
    foreign = [p for p in (out, out.with_name(out.name + ".data")) if p.exists() and p.name not in ours]
    if foreign:
        raise SegtrainError(f"out={out}: {foreign[0]} exists and segtrain-export did not write it; choose another "
                            "out= (nothing was written)")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SegtrainError(f"out={out}: cannot write there ({e.strerror})") from None
    if not os.access(out.parent, os.W_OK):
        raise SegtrainError(f"out={out}: cannot write there (permission denied)")


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="export")
def main(cfg) -> None:
    try:
        export_checkpoint(cfg)
    except SegtrainError as error:
        exit_with_error("segtrain-export", error)


def run(argv) -> Path:
    """segtrain-export's work for an argument list, without Hydra's command line (tests, scripts)."""
    cfg, _ = compose_app("export", argv)
    return export_checkpoint(cfg)


def cli() -> None:
    """The console script (segtrain.cli.checkpoint_command)."""
    checkpoint_command("segtrain-export", main)


if __name__ == "__main__":
    cli()
