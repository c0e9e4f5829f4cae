from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import SegtrainError
from .cityscapes import Cityscapes
from .files import FileDataset
from .labels import IGNORE_INDEX
from .folder import FolderDataset
from .nyud import NYUDv2
from .siftflow import SiftFlow
from .synthetic import SyntheticScenes
from .voc import VOCSegmentation


def _synthetic(cfg, split: str):
    num_images = {"train": cfg.num_train, "val": cfg.num_val}
    if split not in num_images:
        raise SegtrainError(f"dataset=synthetic has splits 'train' and 'val', not {split!r}")
    return SyntheticScenes(split, num_images[split], cfg.image_size, cfg.seed)


# dataset name (the `dataset=` choice) -> builder(dataset config, split)
DATASETS = {
    "synthetic": _synthetic,
    "voc": VOCSegmentation,
    "voc_aug": VOCSegmentation,
    "nyud": NYUDv2,
    "siftflow": SiftFlow,
    "folder": FolderDataset,
    "cityscapes": Cityscapes,
}


def build_dataset(cfg, split: str, evaluation: bool = False):
    """A Dataset of (normalised float image (C, H, W), long label (H, W)) with class_names, palette,
    ignore_index, mean, std and input_channels (channels per input stream) attributes. With dataset.scale or
    dataset.short_side the images are resized; for `evaluation` the labels keep their stored size (the metrics
    are taken there, the network's scores upsampled to it)."""
    if cfg.name not in DATASETS:
        raise SegtrainError(f"dataset.name={cfg.name!r} is not known; expected one of {sorted(DATASETS)}")
    if not isinstance(split, str) and cfg.name != "folder":
        raise SegtrainError(f"dataset={cfg.name}: a split is one name, not {list(split)} (lists of splits are for "
                            "dataset=folder)")
    scale, short_side = cfg.get("scale"), cfg.get("short_side")
    if scale is not None and short_side is not None:
        raise SegtrainError(f"dataset.scale={scale} and dataset.short_side={short_side} both resize the images; "
                            "set one of them")
    if (scale is not None and scale <= 0) or (short_side is not None and short_side < 1):
        raise SegtrainError("dataset.scale must be > 0 and dataset.short_side >= 1 pixel")
    dataset = DATASETS[cfg.name](cfg, split)
    if cfg.num_classes is not None and len(dataset.class_names) != cfg.num_classes:
        raise SegtrainError(f"dataset.num_classes={cfg.num_classes} but dataset {cfg.name} has "
                            f"{len(dataset.class_names)} classes")
    if scale is not None or short_side is not None:
        if not isinstance(dataset, FileDataset):
            raise SegtrainError(f"dataset.scale/short_side resize files as they are read; dataset={cfg.name} "
                                "renders its own size (dataset.image_size)")
        dataset.set_resize(scale, short_side, full_size_labels=evaluation)
    return dataset


def shared_images(train, val) -> list:
    """Warnings (one line, or none) when the train and val splits of file datasets share images: the validation
    scores would then measure images the model trains on (the same folder named by both split keys)."""
    paths = [{Path(item[0]).resolve() for item in getattr(d, "items", [])} for d in (train, val)]
    shared = sorted(paths[0] & paths[1])
    if not shared:
        return []
    return [f"dataset.train_split and dataset.val_split share {len(shared)} of the {len(paths[1])} val images (e.g. "
            f"{shared[0].name}): the validation scores measure images the model trains on; give the splits "
            "different folders or lists"]


def split_name(split) -> str:
    """A split as text (reports, JSON): its name, or a list's names joined by '+'."""
    return split if isinstance(split, str) else "+".join(str(s) for s in split)


def pad_collate(batch):
    """Stacks (image, label, *per-pixel maps) items of different sizes by padding each at the bottom and right to
    the largest: images with 0 (the mean, after normalisation), labels with the ignore index and the maps (e.g.
    the loss's pixel weights) with 0, so padding never counts. Where images were resized and labels kept their
    size (evaluation), a third entry gives each item's (image height, image width, label height, label width),
    so scores can be upsampled to the labels."""
    def pad(x, height, width, value):
        return F.pad(x, (0, width - x.shape[-1], 0, height - x.shape[-2]), value=value)

    image_size = [max(item[0].shape[dim] for item in batch) for dim in (-2, -1)]
    label_size = [max(item[1].shape[dim] for item in batch) for dim in (-2, -1)]
    images = torch.stack([pad(item[0], *image_size, 0.0) for item in batch])
    labels = torch.stack([pad(item[1], *label_size, IGNORE_INDEX) for item in batch])
    maps = [torch.stack([pad(item[k], *label_size, 0.0) for item in batch]) for k in range(2, len(batch[0]))]
    if maps or all(item[0].shape[-2:] == item[1].shape[-2:] for item in batch):
        return (images, labels, *maps)
    return images, labels, torch.tensor([[*item[0].shape[-2:], *item[1].shape[-2:]] for item in batch])


def checkpoint_dataset_info(state: dict, cfg) -> dict:
    """dataset_info as a checkpoint stores it; checkpoints written before it was stored read it off the dataset."""
    return state.get("data") or dataset_info(build_dataset(cfg.dataset, cfg.dataset.val_split))


def dataset_info(dataset) -> dict:
    """What inference on new images needs from a dataset, as plain data (stored in every checkpoint)."""
    scale = getattr(dataset, "scale", (255.0,) * sum(dataset.input_channels))  # stored value of full intensity
    return {"class_names": list(dataset.class_names), "mean": list(dataset.mean), "std": list(dataset.std),
            "palette": dataset.palette.tolist(), "input_channels": list(dataset.input_channels),
            "scale": [float(v) for v in scale]}


def item_name(dataset, index: int) -> str:
    """What to call item `index` in a picture: its image file's name (its path under the root where names repeat
    across folders), its id, or its position."""
    from torch.utils.data import Subset

    if isinstance(dataset, Subset):
        return item_name(dataset.dataset, dataset.indices[index])
    items = getattr(dataset, "items", None)
    if items is None:
        return f"{getattr(dataset, 'split', 'item')} {index}"
    item = items[index]
    if not (isinstance(item, tuple) and hasattr(item[0], "name")):
        return str(item)
    root = getattr(dataset, "root", None)  # a folder dataset: by its path, so that equal names stay distinct
    if root is not None and len({i[0].name for i in items}) < len(items):
        try:
            return str(item[0].relative_to(root))
        except ValueError:
            pass
    return item[0].name
