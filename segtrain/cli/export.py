"""`segtrain-export ckpt=PATH [format=onnx] [out=FILE.onnx] [height=512] [width=512] [dynamic=true]`

Exports a checkpoint's network to ONNX (torch.onnx's dynamo exporter) with the batch, height and width dynamic,
then runs the file with onnxruntime at the example size and at another size and checks that it matches PyTorch.
Networks whose padding depends on the input size in Python (U-Net's overlap-tile mirroring, DeconvNet's mirroring
to 224) export with dynamic=false at the given height and width only.
"""
import sys
from pathlib import Path

from ..errors import SegtrainError
from . import exit_with_error, parse_key_values

USAGE = "usage: segtrain-export ckpt=PATH [format=onnx] [out=FILE.onnx] [height=512] [width=512] [dynamic=true]"


def check_onnx(path, model, inputs, tolerance: float) -> float:
    """The largest difference between onnxruntime's and PyTorch's outputs over `inputs`, relative to the output's
    range; an error if it exceeds `tolerance`."""
    import numpy as np
    import onnxruntime
    import torch

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for x in inputs:
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
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


def run(argv) -> Path:
    own, overrides = parse_key_values(argv, ("ckpt", "format", "out", "height", "width", "dynamic"), USAGE, __doc__)
    if own.get("format", "onnx") != "onnx":
        raise SegtrainError(f"format={own['format']}: only onnx is supported; {USAGE}")
    try:
        height, width = int(own.get("height", 512)), int(own.get("width", 512))
    except ValueError:
        raise SegtrainError(f"height= and width= take whole numbers of pixels; {USAGE}") from None
    dynamic = own.get("dynamic", "true").lower() in ("true", "1", "yes")
    import torch

    from ..checkpoint import load_checkpoint
    from ..data import checkpoint_dataset_info
    from ..train import build_model_from_config
    from .evaluate import compose_stored_config

    state = load_checkpoint(own["ckpt"])
    cfg = compose_stored_config(state["config"], overrides)
    info = checkpoint_dataset_info(state, cfg)
    if cfg.model.get("crf"):
        raise SegtrainError(f"ckpt={own['ckpt']}: model.crf={cfg.model.crf} builds its CRF lattice from each "
                            "image's pixels (sizes known only at run time), which ONNX cannot express; evaluate "
                            "and predict with segtrain-eval and segtrain-predict")
    model = build_model_from_config(cfg, cfg.dataset.num_classes, info["input_channels"])
    model.load_state_dict(state["model"])
    model.eval()
    channels = sum(info["input_channels"])
    out = Path(own.get("out") or Path(own["ckpt"]).with_suffix(".onnx"))
    example = torch.randn(1, channels, height, width)
    shapes = None
    if dynamic:
        shapes = {"x": {0: torch.export.Dim("batch", min=1, max=1024), 2: torch.export.Dim("height", min=1, max=8192),
                        3: torch.export.Dim("width", min=1, max=8192)}}
    try:
        with torch.no_grad():
            torch.onnx.export(model, (example,), str(out), input_names=["image"], output_names=["scores"],
                              dynamic_shapes=shapes, dynamo=True, verbose=False)
    except Exception as e:  # noqa: BLE001 - the exporter raises many kinds; the first line says which
        hint = " Try dynamic=false with height= and width=." if dynamic else ""
        raise SegtrainError(f"cannot export {cfg.model.name} to ONNX ({type(e).__name__}: "
                            f"{str(e).strip().splitlines()[0][:200]}).{hint}") from None
    inputs = [example] + ([torch.randn(2, channels, height // 2 + 7, width // 2 + 3)] if dynamic else [])
    worst = check_onnx(out, model, inputs, tolerance=1e-3)
    sizes = " and ".join(f"{tuple(x.shape)}" for x in inputs)
    print(f"wrote {out} ({'dynamic batch, height and width' if dynamic else f'fixed {height}x{width}'}); "
          f"onnxruntime matches PyTorch on {sizes} within {worst:.1e} of the output range")
    return out


def main(argv=None) -> None:
    try:
        run(sys.argv[1:] if argv is None else argv)
    except SegtrainError as error:
        exit_with_error("segtrain-export", error)


if __name__ == "__main__":
    main()
