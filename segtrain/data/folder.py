"""The user's own data: images and index-PNG masks in two folders, classes (and colours) in a small YAML.

    <root>/images/<name>.jpg|png|...   <root>/masks/<name>.png   <root>/<split>.txt (names, optional)
    classes.yaml:  classes: [{name: background, color: [0, 0, 0]}, {name: road, color: [128, 64, 128]}, ...]

Without split files, <root>/images/<split>/ and <root>/masks/<split>/ are used."""
from pathlib import Path

import torch

from ..errors import SegtrainError
from .files import IMAGE_SUFFIXES, FileDataset, read_image, read_label_png, read_split, require_root
from .palette import voc_palette

LAYOUT = ("<root>/images/<name>.jpg and <root>/masks/<name>.png with <root>/<split>.txt listing names, or "
          "<root>/images/<split>/ and <root>/masks/<split>/")


def read_classes(path):
    """(names, palette (256, 3) uint8) from the classes YAML; classes without a colour get VOC's."""
    from omegaconf import OmegaConf

    if path is None or not Path(path).is_file():
        raise SegtrainError(f"dataset.classes={path}: no such file; expected a YAML with `classes: [{{name: ..., "
                            "color: [R, G, B]}}, ...]` (color optional), one entry per mask value 0, 1, ...")
    try:
        entries = OmegaConf.to_container(OmegaConf.load(path))["classes"]
        names = [str(e["name"]) if isinstance(e, dict) else str(e) for e in entries]
        palette = voc_palette()
        for index, entry in enumerate(entries):
            if isinstance(entry, dict) and entry.get("color") is not None:
                palette[index] = torch.tensor([int(c) for c in entry["color"]], dtype=torch.uint8)
    except Exception as e:  # noqa: BLE001 - any malformed file gets the same one-line message
        raise SegtrainError(f"dataset.classes={path}: not a classes YAML ({type(e).__name__}: {e}); expected "
                            "`classes: [{name: ..., color: [R, G, B]}, ...]`") from None
    if not 1 <= len(names) <= 255:
        raise SegtrainError(f"dataset.classes={path}: lists {len(names)} classes; expected 1 to 255")
    return tuple(names), palette


def load_item(item):
    image_path, mask_path = item
    return read_image(image_path), read_label_png(mask_path), mask_path


class FolderDataset(FileDataset):
    def __init__(self, cfg, split: str):
        self.class_names, self.palette = read_classes(cfg.classes)
        self.mean, self.std = tuple(cfg.mean), tuple(cfg.std)
        root = require_root(cfg.root, cfg.name, LAYOUT, "your own data")
        images, masks = root / cfg.image_dir, root / cfg.mask_dir
        split_file = root / f"{split}.txt"
        if split_file.is_file():
            names = read_split(split_file)
        elif (images / split).is_dir():
            images, masks = images / split, masks / split
            names = sorted(p.stem for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            raise SegtrainError(f"dataset=folder: no split {split!r} in {root}: expected {split_file} or "
                                f"{images / split}/ ({LAYOUT})")
        by_stem = {p.stem: p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES} if images.is_dir() \
            else {}
        missing = [n for n in names if n not in by_stem]
        if missing:
            raise SegtrainError(f"{images}: no image for {missing[0]!r}" + (f" and {len(missing) - 1} more"
                                                                          if len(missing) > 1 else ""))
        super().__init__([(by_stem[n], masks / f"{n}.png") for n in names], load_item)
