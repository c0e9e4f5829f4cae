"""Write docs/models.md: every model's parameters, the published figure, and FLOPs at 500x500 and 1024x512.

    python scripts/model_table.py            # prints the table and rewrites docs/models.md

Models are built at full width on the meta device (no memory, no init), so this runs in seconds on a CPU.
FLOPs are torch.utils.flop_counter's (a multiply-add counts 2), for one 3-channel image of each size.
"""
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
from segtrain.models import MODELS, build_model, count_parameters

# (classes, options, the published or docs/reference.md figure, note)
MODEL_FACTS = {
    "fcn32s": (21, {}, "134,346,581 (paper 134M)", "fixed upsampling not counted (+1,806,336)"),
    "fcn16s": (21, {}, "134,357,354", ""),
    "fcn8s": (21, {}, "134,362,751", ""),
    "fcn8s_atonce": (21, {}, "134,362,751", "pool4 x0.01, pool3 x0.0001"),
    "fcn32s_fixed": (21, {}, "-", "only score_fr trains (the paper's FCN-32s-fixed)"),
    "fcn_alexnet": (21, {}, "56,954,261 (CaffeNet; paper 57M)",
                    "torchvision's AlexNet: one tower, no LRN; fc6 6x6, upscore 63/s32, crop 18"),
    "fcn_googlenet": (21, {}, "paper 6M", "torchvision's GoogLeNet (BN, 3x3 \"5x5\" branches); inception5b scored, "
                      "upscore 63/s32"),
    "deeplab_largefov": (21, {}, "20,505,429 (paper 20.5M)", "output stride 8"),
    "deeplab_aspp": (21, {}, "44.05M (42,500,160 + 4 x 387,093)", "ResNet-101 at output stride 8, ASPP 6/12/18/24 "
                     "summed; frozen_bn moves 105,344 BN affine to buffers"),
    "unet": (2, {}, "31,030,658 (1 input channel)", "3 input channels here; 572 -> 388 valid geometry"),
    "unet_same": (2, {"batch_norm": True}, "31,037,698", "padded convs, BN"),
    "deconvnet": (21, {}, "251,772,245 + 33,408 BN (paper 252M)", "VGG16-BN, unpooling with switches; 224 input"),
    "frrn_a": (19, {}, "paper 17.7M", "Cityscapes' 19 classes; pooling stream to /16, 32-lane full-resolution stream; "
               "from the release's layer table (exact in the tests)"),
    "frrn_b": (19, {}, "paper 24.8M", "as FRRN-A with a /32 stage"),
}
SIZES = ((500, 500), (512, 1024))  # (height, width): VOC-sized, and a half-resolution Cityscapes frame


def measure(name: str):
    """(classes, trainable, all parameters, [FLOPs at each of SIZES])."""
    classes, options, _, _ = MODEL_FACTS[name]
    flops = []
    with torch.device("meta"):
        model = build_model(name, classes, **options).eval()
        for height, width in SIZES:
            with FlopCounterMode(display=False) as counter:
                model(torch.empty(1, 3, height, width))
            flops.append(counter.get_total_flops())
    return classes, count_parameters(model), count_parameters(model, trainable_only=False), flops


def main():
    missing = set(MODELS) - set(MODEL_FACTS)
    if missing:
        raise SystemExit(f"add {sorted(missing)} to MODEL_FACTS")
    rows = ["| model | classes | trainable parameters | all parameters | reference | GFLOPs at 500x500 | "
            "GFLOPs at 1024x512 | notes |", "|---|---|---|---|---|---|---|---|"]
    for name in MODELS:
        classes, trainable, total, flops = measure(name)
        _, _, reference, note = MODEL_FACTS[name]
        rows.append(f"| `{name}` | {classes} | {trainable:,} | {total:,} | {reference} | "
                    + " | ".join(f"{f / 1e9:,.1f}" for f in flops) + f" | {note} |")
    table = "\n".join(rows)
    print(table)
    (ROOT / "docs" / "models.md").write_text(f"""# Models

Written by `python scripts/model_table.py`. Counts are at full
width (`model.width=1.0`) with the model's YAML defaults; "reference" is docs/reference.md section 3 (the papers'
reference implementations, counted layer by layer; FRRN's from the authors' release) and a test checks each
exact figure. FLOPs count a multiply-add as 2 for one 3-channel image of 500x500 and of 1024x512 (width x
height); FCN's conv1_1 padding of 100 makes them larger inside.

{table}

EDeconvNet is not a network of its own: it is the product of a trained DeconvNet's and a trained FCN-8s's class
probabilities, scored by `segtrain-eval ckpt=DECONVNET.pt ensemble=FCN8S.pt` (then the CRF, as the paper).
""")


if __name__ == "__main__":
    main()
