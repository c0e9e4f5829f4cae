"""Training augmentation on albumentations 2.0.8 (the `augment` config group).

Transforms act on the image as stored (uint8 for image files; any number of channels), before the dataset
normalises it: geometric ones on image and label together, labels resampled nearest-neighbour and padded with
255, images padded with the mean; photometric ones on the RGB channels. Each sample's transforms are seeded by
(seed, its position in the sampler's endless run), so a sample is augmented the same way in whichever DataLoader
worker loads it and after a resume."""
import logging

import cv2
import numpy as np
from torch.utils.data import Dataset

from ..errors import SegtrainError
from .files import describe_error
from .labels import IGNORE_INDEX

log = logging.getLogger("segtrain")


def build_transforms(cfg, fill=0.0, grey: bool = False):
    """(geometric, photometric) albumentations pipelines (either may be None) for an `augment` config, with its
    random crop_size crop (when set) after the geometric transforms, but before DeepLab's mirror as DeepLab
    orders them. Images are padded with `fill` (the dataset's mean, as stored), labels with 255. For `grey`
    (1-channel) images the photometric pipeline keeps brightness, contrast and blur; saturation and hue, which
    need colour, are left out."""
    import albumentations as A

    crop = [A.PadIfNeeded(cfg.crop_size, cfg.crop_size, position="top_left", border_mode=cv2.BORDER_CONSTANT,
                          fill=fill, fill_mask=IGNORE_INDEX), A.RandomCrop(cfg.crop_size, cfg.crop_size)
            ] if cfg.crop_size else []

    def compose(transforms):
        return A.Compose(transforms, strict=True, seed=0) if transforms else None

    if cfg.name == "none":
        return compose(crop), None
    if cfg.name == "deeplab":  # DeepLab: random scale, pad, random crop, mirror
        return compose([A.RandomScale(scale_limit=(cfg.scale_min - 1, cfg.scale_max - 1), p=1.0),
                        *crop, A.HorizontalFlip(p=0.5 if cfg.flip else 0.0)]), None
    if cfg.name == "unet":  # U-Net: smooth deformations of a coarse grid, flips
        return compose([
            A.GridElasticDeform(num_grid_xy=(cfg.grid, cfg.grid), magnitude=cfg.magnitude, p=1.0),
            A.HorizontalFlip(p=0.5 if cfg.flip else 0.0),
            A.VerticalFlip(p=0.5 if cfg.flip else 0.0),
            *crop,
        ]), None
    if cfg.name == "photometric":
        return compose(crop), A.Compose([
            A.ColorJitter(brightness=cfg.brightness, contrast=cfg.contrast, saturation=0.0 if grey else cfg.saturation,
                          hue=0.0 if grey else cfg.hue, p=0.8),
            A.GaussianBlur(blur_limit=(3, 5), p=0.2),
        ], strict=True, seed=0)
    raise SegtrainError(f"augment.name={cfg.name!r} is not known; expected none, deeplab, unet or photometric")


class Augmented(Dataset):
    """`dataset` with random transforms; items are (index, position) pairs from InfiniteSampler(with_position).
    The transforms work on the images as stored (uint8 for image files: cheaper, and only the kept pixels are
    normalised afterwards by the dataset's finish())."""

    def __init__(self, dataset, cfg, seed: int):
        self.dataset, self.seed, self.name = dataset, seed, str(cfg.name)
        self.grey = tuple(getattr(dataset, "input_channels", (3,))) == (1,)
        self.geometric, self.photometric = build_transforms(cfg, fill=dataset.raw_fill(), grey=self.grey)
        if self.grey and self.photometric is not None and (cfg.saturation or cfg.hue):
            log.info("augment=%s on grey images: brightness, contrast and blur; saturation and hue need colour and "
                     "are left out", self.name)

    def __getattr__(self, name):  # class_names, palette, mean, std, tasks, ... of the wrapped dataset
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, item):
        index, position = item
        image, label = self.dataset.raw_item(index)
        try:
            return self.augment(image, label, position)
        except Exception as e:  # noqa: BLE001 - albumentations and OpenCV raise many kinds (cv2.error, ...)
            name = self.dataset.item_label(index) if hasattr(self.dataset, "item_label") else f"item {index}"
            raise SegtrainError(f"{name}: augment={self.name} failed on it ({describe_error(e)}); check the "
                                "augment.* values") from None

    def augment(self, image, label, position: int):
        seed = int(np.random.default_rng([self.seed, position]).integers(2 ** 31))
        if self.photometric is not None and self.grey:
            self.photometric.set_random_seed(seed)
            image = self.photometric(image=np.ascontiguousarray(image))["image"].astype(image.dtype)
        elif self.photometric is not None and image.shape[2] >= 3:
            self.photometric.set_random_seed(seed)
            rgb = self.photometric(image=np.ascontiguousarray(image[..., :3]))["image"]  # uint8 RGB (or 0..255)
            image = np.concatenate([rgb.astype(image.dtype), image[..., 3:]], axis=2)
        if self.geometric is not None:
            self.geometric.set_random_seed(seed)
            masks = label if label.ndim == 2 else np.moveaxis(label, 0, -1)  # multi-task: (H, W, tasks)
            out = self.geometric(image=np.ascontiguousarray(image), mask=np.ascontiguousarray(masks))
            image, label = out["image"], out["mask"] if label.ndim == 2 else np.moveaxis(out["mask"], -1, 0)
        return self.dataset.finish(image, label)
