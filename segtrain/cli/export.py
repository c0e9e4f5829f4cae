"""`segtrain-export ckpt=PATH [format=onnx] [out=FILE.onnx] [height=512] [width=512] [dynamic=true]`: a Hydra app
(configs/export.yaml; `--help`, `--cfg job`).

Exports a checkpoint's network to ONNX (torch.onnx's dynamo exporter) with the batch, height and width dynamic,
then runs the file with onnxruntime at the example size and at another size and checks that it matches PyTorch.
Networks that mirror an image out to the sizes they take (U-Net, DeconvNet, FRRN) export with dynamic sizes among
those only; `dynamic=false` exports one fixed height x width. The work is segtrain.export's.
"""
from ..export import export_checkpoint
from . import checkpoint_app

main, run, cli = checkpoint_app("segtrain-export", "export", lambda cfg, out_dir: export_checkpoint(cfg))

if __name__ == "__main__":
    cli()
