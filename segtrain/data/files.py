"""Reading datasets as they come on disk: images, index-PNG and .mat labels, split files, with one-line errors
that name the file and the problem."""
from pathlib import Path
from typing import Callable, List, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import SegtrainError

IGNORE_INDEX = 255
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")  # what a folder of images may hold
IMAGENET_STD = (0.229, 0.224, 0.225)  # torchvision's ImageNet weights expect inputs divided by these


def read_image(path: Path, mode: str = "RGB") -> np.ndarray:
    """(H, W, 3) uint8 for mode RGB; (H, W) as stored for mode None (e.g. 16-bit depth PNGs)."""
    from PIL import Image, UnidentifiedImageError

    if not Path(path).is_file():
        raise SegtrainError(f"{path}: image file is missing")
    try:
        with Image.open(path) as image:
            return np.array(image.convert(mode) if mode else image)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise SegtrainError(f"{path}: cannot read the image ({e})") from None


def read_label_png(path: Path) -> np.ndarray:
    """The raw index values of a 'P' (palette) or 'L' label PNG, never the colours."""
    from PIL import Image, UnidentifiedImageError

    if not Path(path).is_file():
        raise SegtrainError(f"{path}: label file is missing")
    try:
        with Image.open(path) as image:
            if image.mode not in ("P", "L"):
                raise SegtrainError(f"{path}: label PNG is mode {image.mode!r}; expected a 'P' (palette) or 'L' "
                                    "image holding class indices")
            return np.array(image)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise SegtrainError(f"{path}: cannot read the label image ({e})") from None


def read_mat(path: Path, key: str) -> np.ndarray:
    """Variable `key` of a MATLAB (v5) .mat file."""
    import scipy.io

    if not Path(path).is_file():
        raise SegtrainError(f"{path}: label file is missing")
    try:
        return scipy.io.loadmat(path)[key]
    except KeyError:
        raise SegtrainError(f"{path}: has no variable {key!r}") from None
    except Exception as e:  # noqa: BLE001 - scipy raises many kinds for a damaged file
        raise SegtrainError(f"{path}: cannot read the .mat file ({e})") from None


def read_split(path: Path) -> List[str]:
    """Ids, one per line (blank lines skipped)."""
    if not Path(path).is_file():
        raise SegtrainError(f"{path}: split file is missing")
    ids = [line.strip().split()[0] for line in Path(path).read_text().splitlines() if line.strip()]
    if not ids:
        raise SegtrainError(f"{path}: split file lists no ids")
    return ids


def require_root(root, name: str, layout: str, source: str) -> Path:
    """The dataset's root folder, or an error that shows the layout segtrain reads and where to get it."""
    if root is None or not Path(root).is_dir():
        raise SegtrainError(f"dataset={name}: dataset.root={root} is not a folder. Expected {layout}. Download: "
                            f"{source}; then set dataset.root=PATH (or SEGTRAIN_DATA)")
    return Path(root)


def check_label(label: np.ndarray, num_classes: int, path) -> np.ndarray:
    """Labels must be class indices or the ignore index; anything else names the file and the values."""
    bad = np.unique(label[(label >= num_classes) & (label != IGNORE_INDEX) | (label < 0)])
    if bad.size:
        shown = ", ".join(str(int(v)) for v in bad[:8]) + (" ..." if bad.size > 8 else "")
        raise SegtrainError(f"{path}: label values {shown} are outside the {num_classes} classes (0..{num_classes - 1}"
                            f", {IGNORE_INDEX} = ignore)")
    return label


class FileDataset(Dataset):
    """Items read by `load(i) -> (image (H, W, C) in 0..255 or already scaled, label (H, W), label path)`,
    checked, then normalised channel-wise: (image / scale - mean) / std.

    Subclasses set class_names, palette, mean, std, scale and input_channels (one entry per input stream)."""

    ignore_index = IGNORE_INDEX
    input_channels: Sequence[int] = (3,)
    scale: Sequence[float] = (255.0, 255.0, 255.0)
    tasks = None  # multi-task datasets: ((task, class names), ...); labels are then (tasks, H, W)

    def __init__(self, items: Sequence, load: Callable):
        self.items, self.load = list(items), load
        # (C, 1, 1) each; subclasses have set scale, mean and std by now
        self._scale, self._mean, self._std = (torch.tensor(v, dtype=torch.float32)[:, None, None]
                                              for v in (self.scale, self.mean, self.std))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index: int):
        image, label, label_path = self.load(self.items[index])
        if image.shape[:2] != label.shape[-2:]:
            raise SegtrainError(f"{label_path}: label is {label.shape[-1]}x{label.shape[-2]} but its image is "
                                f"{image.shape[1]}x{image.shape[0]} (width x height)")
        for task_label, class_names in zip(label, [names for _, names in self.tasks]) if self.tasks else [
                (label, self.class_names)]:
            check_label(task_label, len(class_names), label_path)
        image = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)
        image = (image / self._scale - self._mean) / self._std
        return image, torch.from_numpy(label.astype(np.int64))


def rgb_mean(bgr_mean_255) -> tuple:
    """A Caffe-style BGR mean in 0..255 as the RGB mean in 0..1 that FileDataset subtracts."""
    return tuple(v / 255 for v in reversed(bgr_mean_255))
