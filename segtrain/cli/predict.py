"""`segtrain-predict ckpt=PATH input=DIR_OR_FILE output=DIR [alpha=0.5] [skip_classes=[NAME,...]] [crf=dense|...]
[inference=...] [roi=DIR_OR_FILE [roi_suffix=_mask.png]] [KEY=VALUE ...]`: a Hydra app (configs/predict.yaml;
`--help`, `--cfg job`).

Segments new images of any size with a trained checkpoint, read as its training data were (RGB, or grey for a
grey model). For each image NAME it writes OUTPUT/NAME.png, the
label map as a palette PNG (pixel value = class index, colours from the dataset's palette), and
OUTPUT/NAME_overlay.png, the image with the classes drawn over it at `alpha` (default 0.5) and a legend of the
classes drawn below it. `skip_classes` (names or indices, comma-separated) are left unpainted; by default the
class named "background" when the dataset has one (`skip_classes=` paints every class). An image that cannot be
read is reported and skipped; the others still run (the exit status is then 1). `crf=` and `inference=` work as
in segtrain-eval, and so do overrides of the stored training config.

`roi=` gives regions of interest (a field of view, say): a folder where image NAME.EXT has its region
NAME<roi_suffix> (roi_suffix defaults to the checkpoint's dataset.roi_suffix, and NAME drops the checkpoint's
dataset.image_suffix as training did), or one file for every image. Pixels where the region is 0 are labelled
255 (void) in NAME.png and left unpainted in the overlay. A missing or wrongly sized region stops the run before
any image is labelled, with one line naming the file and the key.
The work is segtrain.predict's.
"""
import sys

from ..predict import predict_images
from . import checkpoint_app

main, run, cli = checkpoint_app("segtrain-predict", "predict", lambda cfg, out_dir: predict_images(cfg),
                                finish=lambda status, *job: sys.exit(status))

if __name__ == "__main__":
    cli()
