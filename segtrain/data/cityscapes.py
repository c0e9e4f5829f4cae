"""Cityscapes (Cordts et al., CVPR 2016) as it unpacks (docs/reference.md 1): leftImg8bit/{split}/{city}/
<frame>_leftImg8bit.png with gtFine/{split}/{city}/<frame>_gtFine_labelIds.png, whose 34 label ids are mapped to the
19 classes of the benchmark (cityscapesScripts' trainId), every other id void."""
from pathlib import Path

import numpy as np
import torch

from ..errors import SegtrainError
from .files import FileDataset, image_header, read_image, require_root
from .folder import IMAGENET_MEAN, IMAGENET_STD_RGB, closest_file
from .labels import LabelEncoding, read_mask
from .palette import voc_palette

# (name, label id, colour) of the 19 evaluated classes, in trainId order (cityscapesScripts, helpers/labels.py)
CLASSES = (("road", 7, (128, 64, 128)), ("sidewalk", 8, (244, 35, 232)), ("building", 11, (70, 70, 70)),
           ("wall", 12, (102, 102, 156)), ("fence", 13, (190, 153, 153)), ("pole", 17, (153, 153, 153)),
           ("traffic light", 19, (250, 170, 30)), ("traffic sign", 20, (220, 220, 0)),
           ("vegetation", 21, (107, 142, 35)), ("terrain", 22, (152, 251, 152)), ("sky", 23, (70, 130, 180)),
           ("person", 24, (220, 20, 60)), ("rider", 25, (255, 0, 0)), ("car", 26, (0, 0, 142)),
           ("truck", 27, (0, 0, 70)), ("bus", 28, (0, 60, 100)), ("train", 31, (0, 80, 100)),
           ("motorcycle", 32, (0, 0, 230)), ("bicycle", 33, (119, 11, 32)))
CLASS_NAMES = tuple(name for name, _, _ in CLASSES)
TRAIN_IDS = {label_id: train_id for train_id, (_, label_id, _) in enumerate(CLASSES)}
SPLITS = ("train", "val", "test", "train_extra")
IMAGE_SUFFIX, MASK_SUFFIX = "_leftImg8bit.png", "_gtFine_labelIds.png"
LAYOUT = ("leftImg8bit/<split>/<city>/<frame>_leftImg8bit.png and gtFine/<split>/<city>/<frame>_gtFine_labelIds.png "
          "(leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip unpacked side by side)")
SOURCE = "https://www.cityscapes-dataset.com/downloads/ (registration required)"


class Cityscapes(FileDataset):
    """Splits train (2975 frames), val (500), test (1525, labels withheld: all void) and train_extra (coarse
    labels are not read). Items: (image, labelIds PNG). Labels: (H, W) uint8 trainIds 0..18, 255 void."""

    class_names = CLASS_NAMES
    mean, std = IMAGENET_MEAN, IMAGENET_STD_RGB

    def __init__(self, cfg, split: str):
        if split not in SPLITS:
            raise SegtrainError(f"dataset=cityscapes: split {split!r} is not one of {', '.join(SPLITS)}")
        root = require_root(cfg.root, cfg.name, LAYOUT, SOURCE)
        images = sorted((root / "leftImg8bit" / split).glob(f"*/*{IMAGE_SUFFIX}"))
        if not images:
            raise SegtrainError(f"dataset=cityscapes: no {split} frames under {root / 'leftImg8bit' / split}; "
                                f"expected {LAYOUT}")
        items = []
        for image in images:
            mask = root / "gtFine" / split / image.parent.name / image.name.replace(IMAGE_SUFFIX, MASK_SUFFIX)
            if not mask.is_file():
                similar = closest_file(mask.parent, mask.name)
                raise SegtrainError(f"{mask}: label file is missing for {image.name}"
                                    + (f"; the most similar file there is {similar.name}" if similar else ""))
            items.append((image, mask))
        self.palette = voc_palette()
        self.palette[:len(CLASSES)] = torch.tensor([colour for _, _, colour in CLASSES], dtype=torch.uint8)
        self.encoding = LabelEncoding(CLASS_NAMES, [list(c) for _, _, c in CLASSES], label_map=TRAIN_IDS,
                                      unmapped="ignore", mask_format="index")
        super().__init__(items, self.load_pair)

    def read_label(self, path: Path) -> np.ndarray:
        stored, palette = read_mask(path)
        return self.encoding.decode(stored, path, palette)

    def load_pair(self, item):
        image_path, mask_path = item
        return read_image(image_path), self.read_label(mask_path), mask_path

    def load_label(self, item):
        image_path, mask_path = item
        return self.read_label(mask_path), mask_path, image_header(image_path)[0]

    def label_signature(self) -> str:
        return "cityscapes " + self.encoding.signature()
