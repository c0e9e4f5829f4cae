"""The training input pipeline: images/s of read, decode, augment, normalise and collate, for VOC-sized JPEGs with
PNG labels and `augment=deeplab` (random scale 0.5-1.5, pad, 321 crop, mirror), per DataLoader worker count;
beside it, in the same run, a plain torchvision.transforms.v2 pipeline doing the same work (torchvision.io's
decoders), as the peer reference.

    python scripts/bench_data.py                       # 200 images of 500x375, workers 0, 1, 2
    python scripts/bench_data.py --images 400 --workers 0 2 4

Writes the images (random scenes: smooth colours and shapes, saved as JPEG quality 90 and palette PNGs) to a
temporary folder first. Each pipeline runs over the images `--epochs` times after one untimed warm-up epoch."""
import argparse
import os
import warnings
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.data import DataLoader, Dataset

from segtrain.config import compose
from segtrain.data import build_dataset, pad_collate
from segtrain.data.augment import Augmented
from segtrain.data.samplers import InfiniteSampler

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def write_images(root: Path, count: int) -> None:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for n in range(count):
        image = Image.fromarray(rng.integers(40, 200, (375, 500, 3), dtype=np.uint8)).resize((500, 375))
        mask = Image.new("L", (500, 375), 0)
        draw, canvas = ImageDraw.Draw(mask), ImageDraw.Draw(image)
        for _ in range(4):
            box = sorted(rng.integers(0, 500, 2).tolist()), sorted(rng.integers(0, 375, 2).tolist())
            shape = [box[0][0], box[1][0], box[0][1], box[1][1]]
            cls = int(rng.integers(1, 21))
            draw.rectangle(shape, fill=cls)
            canvas.rectangle(shape, fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
        image.save(root / "images" / f"{n:05d}.jpg", quality=90)
        mask.save(root / "masks" / f"{n:05d}.png")
    (root / "classes.yaml").write_text("classes: [" + ", ".join(f"c{i}" for i in range(21)) + "]\n")


class TorchvisionPipeline(Dataset):
    """The same work in torchvision.transforms.v2: decode_jpeg/decode_png, a random scale, pad and crop, flip,
    to float, normalise."""

    def __init__(self, pairs, crop: int = 321):
        from torchvision import tv_tensors
        from torchvision.transforms import v2

        self.pairs, self.v2 = pairs, v2
        self.after_scale = v2.Compose([
            v2.RandomCrop(crop, pad_if_needed=True, fill={tv_tensors.Image: 0, tv_tensors.Mask: 255}),
            v2.RandomHorizontalFlip(),
            v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True),
            v2.Normalize(MEAN, STD),
        ])

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, index):
        from torchvision import io, tv_tensors

        image_path, mask_path = self.pairs[index % len(self.pairs)]
        image = tv_tensors.Image(io.decode_jpeg(io.read_file(str(image_path))))
        mask = tv_tensors.Mask(io.decode_png(io.read_file(str(mask_path)))[0])
        scale = random.uniform(0.5, 1.5)
        size = [round(image.shape[-2] * scale), round(image.shape[-1] * scale)]
        image = self.v2.functional.resize(image, size, antialias=True)
        mask = self.v2.functional.resize(mask, size, interpolation=self.v2.InterpolationMode.NEAREST)
        image, mask = self.after_scale(image, mask)
        return image, mask.long()


def images_per_second(dataset, workers: int, epochs: int, sampler, batch: int = 8) -> float:
    loader = DataLoader(dataset, batch_size=batch, num_workers=workers, collate_fn=pad_collate, sampler=sampler,
                        persistent_workers=workers > 0)
    batches = iter(loader)
    per_epoch = len(dataset) // batch
    for _ in range(per_epoch):  # warm-up: workers started, files in the page cache
        next(batches)
    began = time.perf_counter()
    for _ in range(per_epoch * epochs):
        next(batches)
    return per_epoch * epochs * batch / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    torch.set_num_threads(1)  # one core per pipeline process, as in DataLoader workers
    warnings.filterwarnings("ignore", message="The image decoding", category=DeprecationWarning)  # torchvision.io
    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        os.environ["SEGTRAIN_CACHE"] = str(root / "cache")
        write_images(root, args.images)
        cfg = compose(["dataset=folder", f"dataset.root={root}",
                       f"dataset.classes={root / 'classes.yaml'}", "augment=deeplab"])
        dataset = build_dataset(cfg.dataset, "train")
        segtrain_items = Augmented(dataset, cfg.augment, seed=0)
        reference = TorchvisionPipeline(dataset.items)
        print(f"{args.images} JPEGs of 500x375 with PNG labels, augment=deeplab (crop 321), batch 8, "
              f"{os.cpu_count()} cores, torch {torch.__version__}")
        for workers in args.workers:
            ours = images_per_second(segtrain_items, workers, args.epochs,
                                     sampler=InfiniteSampler(len(dataset), 0, with_position=True))
            theirs = images_per_second(reference, workers, args.epochs, InfiniteSampler(len(dataset), 0))
            print(f"workers {workers}: segtrain {ours:7.1f} images/s, torchvision.transforms.v2 {theirs:7.1f} "
                  f"images/s, ratio {ours / theirs:.2f}")


if __name__ == "__main__":
    main()
