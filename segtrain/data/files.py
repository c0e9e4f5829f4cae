"""Reading datasets as they come on disk: images, index-PNG and .mat labels, split files, with one-line errors
that name the file and the problem."""
import logging
from pathlib import Path
from typing import Callable, List, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..errors import SegtrainError
from .labels import IGNORE_INDEX

log = logging.getLogger("segtrain")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")  # what a folder of images may hold
IMAGENET_STD = (0.229, 0.224, 0.225)  # torchvision's ImageNet weights expect inputs divided by these


def describe_error(error: BaseException) -> str:
    """`Type: first line of the message` (cv2.error, not a bare `error`), for one-line messages."""
    kind = type(error).__name__ if type(error).__module__ == "builtins" else \
        f"{type(error).__module__}.{type(error).__name__}"
    text = str(error).strip()
    return f"{kind}: {text.splitlines()[0][:200]}" if text else kind


def yaml_problem(error: BaseException, text: str) -> str:
    """A YAML parser's error as one phrase (its own takes several lines): `line L: problem`; a key given twice in
    one mapping is quoted both times as `text` (the file) writes it, `"name"` or `name`."""
    import yaml

    if not isinstance(error, yaml.MarkedYAMLError) or error.problem_mark is None:
        return describe_error(error)
    if str(error.problem).startswith("found duplicate key"):
        for first, again in _repeated_keys(yaml.compose(text, Loader=yaml.SafeLoader)):
            written = [text[key.start_mark.index:key.end_mark.index] for key in (first, again)]
            return (f"line {again.start_mark.line + 1}: key {written[1]} given twice in one mapping, first "
                    f"{f'as {written[0]} ' if written[0] != written[1] else ''}on line {first.start_mark.line + 1}")
    return f"line {error.problem_mark.line + 1}: {error.problem}"


def _repeated_keys(node):
    """(first, repeat) key nodes of every mapping under `node` where a key comes twice (same tag and value)."""
    import yaml

    if isinstance(node, yaml.MappingNode):
        seen = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and (key.tag, key.value) in seen:
                yield seen[key.tag, key.value], key
            elif isinstance(key, yaml.ScalarNode):
                seen[key.tag, key.value] = key
            yield from _repeated_keys(value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _repeated_keys(item)


EXIF_ORIENTATION = 0x0112  # the tag cameras and phones write: how the stored pixels are turned to be displayed
TURNED = {3: "turned 180 degrees", 6: "turned 90 degrees", 8: "turned 270 degrees", 2: "mirrored",
          4: "mirrored vertically", 5: "transposed", 7: "transversed"}


def orientation(image) -> int:
    """An open PIL image's EXIF orientation (1: as stored)."""
    try:
        return int(image.getexif().get(EXIF_ORIENTATION, 1) or 1)
    except Exception:  # noqa: BLE001 - a damaged EXIF block: the pixels as stored
        return 1


HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")  # 16- and 32-bit integer, 32-bit float
GREY = "grey"  # read_image's mode for one grey channel at the file's own depth
_flattened = set()  # (dtype, intensity_range) whose scaling has made an image constant: warned about once


def to_depth(pixels: np.ndarray, intensity_range="auto", path="image", full: int = 255,
             warn: bool = True) -> np.ndarray:
    """Pixels of any depth (8, 16 or 32-bit integer, float; any channels) as uint8 (`full` 255) or uint16 (`full`
    65535), scaled from their own depth: the stored values LO..HI become 0..full, where intensity_range gives
    LO..HI: auto (the type's full range: 0..255, 0..65535, 0..2^31-1; floats 0..1), [LO, HI] (stored values), or
    percentile (this image's 1st to 99th percentile). PIL's own conversion clips at 255 instead (a 16-bit image
    turned constant white). Errors: SegtrainError for a float image with NaN or infinite values, and for one
    outside 0..1 under auto. With `warn`, an image of several stored values that the scaling turns constant is a
    warning (once per kind of image and setting), naming the file and dataset.intensity_range."""
    dtype = np.uint8 if full == 255 else np.uint16
    if intensity_range == "auto" and pixels.dtype == dtype:
        return pixels
    values = pixels.astype(np.float64)
    if pixels.dtype.kind == "f" and not np.isfinite(values).all():
        raise SegtrainError(f"{path}: a float image with NaN or infinite values; expected finite intensities")
    if intensity_range == "percentile":
        low, high = np.percentile(values, (1, 99))
    elif intensity_range == "auto":
        if pixels.dtype.kind == "f":
            low, high = 0.0, 1.0
            if values.size and (values.min() < 0 or values.max() > 1):
                raise SegtrainError(f"{path}: a float image with values {values.min():g}..{values.max():g}, not "
                                    "0..1; set dataset.intensity_range=[LO,HI] (stored values, the same for "
                                    "every file: only where all files share a range) or percentile (each "
                                    "image's own)")
        else:
            info = np.iinfo(pixels.dtype)
            low, high = max(info.min, 0), info.max
    else:
        low, high = (float(v) for v in intensity_range)
    scaled = np.clip(np.round((values - low) / max(high - low, 1e-12) * full), 0, full).astype(dtype)
    if warn and scaled.size and scaled.min() == scaled.max() and values.min() != values.max():
        kind = (str(pixels.dtype), str(intensity_range))
        if kind not in _flattened:
            _flattened.add(kind)
            log.warning(
                "%s: its %s values %g..%g all become %d under dataset.intensity_range=%s (stored %g..%g mapped to "
                "0..%d): a constant image; set dataset.intensity_range=%s", path, pixels.dtype,
                values.min(), values.max(), scaled.flat[0], intensity_range if isinstance(intensity_range, str)
                else list(intensity_range), low, high, full,
                "[LO,HI]" if intensity_range == "percentile" else "[LO,HI] or percentile")
    return scaled


def read_image(path: Path, mode: str = "RGB", exif: bool = True, intensity_range="auto") -> np.ndarray:
    """(H, W, 3) uint8 for mode RGB; (H, W) as stored for mode None (e.g. 16-bit depth PNGs); for mode GREY one
    grey channel (H, W) at the file's own depth (8, 16, 32-bit integer or float as stored; colour, palette, bilevel
    and grey-with-alpha files as their 8-bit luminance, ITU-R 601-2 as PIL converts them). With `exif` the pixels
    are turned as the file's EXIF orientation says, so that they are the upright picture annotation tools and
    browsers show (dataset.exif_orientation=apply). Read as RGB, an image is scaled from its own bit depth by
    `intensity_range` (to_depth; auto leaves 8-bit files as stored), a grey one copied to the three channels.
    `path` may also be a PIL image, read by the same rules (an opened file's EXIF orientation included)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    def pixels(image, name):
        if exif and orientation(image) != 1:
            image = ImageOps.exif_transpose(image)
        if mode == GREY:
            return np.array(image if image.mode in ("L", *HIGH_DEPTH_MODES) else image.convert("L"))
        if mode == "RGB" and image.mode in HIGH_DEPTH_MODES:
            grey = to_depth(np.array(image), intensity_range, name)
            return np.repeat(grey[..., None], 3, axis=2)
        stored = np.array(image.convert(mode) if mode else image)
        return to_depth(stored, intensity_range, name) if mode == "RGB" else stored

    opened = isinstance(path, Image.Image)
    name = (getattr(path, "filename", "") or "the PIL image") if opened else path
    if not opened and not Path(path).is_file():
        raise SegtrainError(f"{path}: image file is missing")
    try:
        if opened:
            return pixels(path, name)
        with Image.open(path) as image:
            return pixels(image, name)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise SegtrainError(f"{name}: cannot read the image ({e})") from None


def image_mode(path: Path) -> str:
    """The PIL mode of an image file, from its header ("" for a file PIL cannot read: its reader says why)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.mode
    except Exception:  # noqa: BLE001 - PIL raises many kinds; reading the file names the problem
        return ""


def grey_full_intensity(paths) -> float:
    """The full intensity grey images are held at (FileDataset.scale): 65535 (uint16) when any of `paths` is
    deeper than 8 bits, else 255 (uint8), so that no file loses depth; to_depth brings each file there."""
    return 65535.0 if any(image_mode(path) in HIGH_DEPTH_MODES for path in paths) else 255.0


def image_header(path: Path, exif: bool = True):
    """((height, width), PIL mode, EXIF orientation) from the file's header, without decoding the pixels; the size
    as displayed when `exif` (a 90 or 270 degree orientation swaps it), else as stored."""
    from PIL import Image, UnidentifiedImageError

    if not Path(path).is_file():
        raise SegtrainError(f"{path}: image file is missing")
    try:
        with Image.open(path) as image:
            turn = orientation(image)
            size = (image.height, image.width)
            return (size[::-1] if exif and turn in (5, 6, 7, 8) else size), image.mode, turn
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise SegtrainError(f"{path}: cannot read the image ({e})") from None


def resized_size(height: int, width: int, scale=None, short_side=None):
    """The size dataset.scale (a factor) or dataset.short_side (pixels) gives an image of height x width."""
    factor = scale if scale is not None else short_side / min(height, width)
    return max(1, round(height * factor)), max(1, round(width * factor))


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


def require_root(root, name: str, layout: str, source: str, classes=None) -> Path:
    """The dataset's root folder, or an error that shows the layout segtrain reads and where to get it. `classes`:
    the dataset's classes file; missing too (it lay under a moved root), the error names dataset.classes= as well,
    so that its advice alone makes a checkpoint's evaluation find both."""
    if root is None or not Path(root).is_dir():
        also = (f", and dataset.classes=PATH ({classes} is missing too)"
                if classes is not None and not Path(classes).is_file() else "")
        raise SegtrainError(f"dataset={name}: dataset.root={root} is not a folder. Expected {layout}. Download: "
                            f"{source}; then set dataset.root=PATH (or SEGTRAIN_DATA){also}")
    return Path(root)


def check_label(label: np.ndarray, num_classes: int, path) -> np.ndarray:
    """Labels must be class indices or the ignore index; anything else names the file and the values."""
    bad = np.unique(label[(label >= num_classes) & (label != IGNORE_INDEX) | (label < 0)])
    if bad.size:
        shown = ", ".join(str(int(v)) for v in bad[:8]) + (" ..." if bad.size > 8 else "")
        raise SegtrainError(f"{path}: label values {shown} are outside the {num_classes} classes (0..{num_classes - 1}"
                            f", {IGNORE_INDEX} = ignore)")
    return label


class Normalize:
    """(image / scale - mean) / std per channel, for an (H, W, C) image as stored (uint8, or float for depth):
    the (C, H, W) float tensor a network takes. Every dataset's items and segtrain-predict's inputs go through
    this one arithmetic, which for RGB is torchvision's ToTensor and Normalize to the last bit."""

    def __init__(self, mean, std, scale):
        self.scale, self.mean, self.std = (torch.tensor(v, dtype=torch.float32)[:, None, None]
                                           for v in (scale, mean, std))

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        image = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()  # one copy, in float
        return image.div_(self.scale).sub_(self.mean).div_(self.std)


def resize_image(image: np.ndarray, size) -> np.ndarray:
    """An (H, W, C) image as stored, resized to (height, width) bilinearly with antialiasing (uint8 stays uint8)."""
    pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
    if pixels.dtype != torch.uint8:
        pixels = pixels.float()
    return F.interpolate(pixels, size=size, mode="bilinear", antialias=True,
                         align_corners=False)[0].permute(1, 2, 0).numpy()


class FileDataset(Dataset):
    """Items read by `load(item) -> (image (H, W, C) in 0..255 or already scaled, label (H, W), label path)`,
    checked, then normalised channel-wise: (image / scale - mean) / std, and resized when set_resize says so.
    A subclass may also define `load_label(item) -> (label, label path, image (height, width))`, which the label
    scan (segtrain.data.scan) uses to read labels without decoding images.

    Subclasses set class_names, palette, mean, std, scale and input_channels (one entry per input stream)."""

    ignore_index = IGNORE_INDEX
    input_channels: Sequence[int] = (3,)
    scale: Sequence[float] = (255.0, 255.0, 255.0)
    tasks = None  # multi-task datasets: ((task, class names), ...); labels are then (tasks, H, W)
    resize = None  # (scale, short_side) from set_resize
    full_size_labels = False  # evaluation: labels stay at their stored size, the network's scores are upsampled

    def __init__(self, items: Sequence, load: Callable):
        self.items, self.load = list(items), load
        self.normalize = Normalize(self.mean, self.std, self.scale)  # subclasses have set them by now

    def set_resize(self, scale=None, short_side=None, full_size_labels: bool = False) -> None:
        """Images resized by a factor or to a short side (bilinear, antialiased), labels nearest-neighbour; with
        full_size_labels the labels keep their stored size (metrics at the label's resolution)."""
        self.resize = (scale, short_side)
        self.full_size_labels = full_size_labels

    def __len__(self):
        return len(self.items)

    def check(self, image_size, label: np.ndarray, label_path) -> None:
        if tuple(image_size) != label.shape[-2:]:
            raise SegtrainError(f"{label_path}: label is {label.shape[-1]}x{label.shape[-2]} but its image is "
                                f"{image_size[1]}x{image_size[0]} (width x height)")
        for task_label, class_names in zip(label, [names for _, names in self.tasks]) if self.tasks else [
                (label, self.class_names)]:
            check_label(task_label, len(class_names), label_path)

    def label_item(self, index: int):
        """(checked label (H, W) or (tasks, H, W), label path, image (height, width))."""
        item = self.items[index]
        if hasattr(self, "load_label"):
            label, label_path, image_size = self.load_label(item)
        else:
            image, label, label_path = self.load(item)
            image_size = image.shape[:2]
        self.check(image_size, label, label_path)
        return label, label_path, image_size

    def item_files(self, index: int) -> List[Path]:
        """The files an item is read from (the label scan's cache key): the paths in a tuple item."""
        item = self.items[index]
        return [p for p in item if isinstance(p, Path)] if isinstance(item, tuple) else []

    def label_signature(self) -> str:
        """What decoding a label depends on besides its file (the label scan's cache key)."""
        return repr((type(self).__name__, tuple(self.class_names), self.tasks))

    def raw_image(self, index: int) -> np.ndarray:
        """(H, W, C) float32 in 0..1 (as stored, before mean/std): for image statistics and previews."""
        image, _, _ = self.load(self.items[index])
        return np.asarray(image, np.float32) / np.asarray(self.scale, np.float32)

    def item_label(self, index: int) -> str:
        """The item in an error line: its first file, else its index."""
        files = self.item_files(index)
        return str(files[0]) if files else f"item {index} of {type(self).__name__}"

    def raw_item(self, index: int):
        """(image (H, W, C) as stored: uint8 for image files, float for depth; label (H, W) or (tasks, H, W)),
        checked and resized; augmentation works on these, before finish() normalises (so it touches only the
        pixels that are kept, and in uint8 where the files hold uint8). An error that is not already one line
        naming the file (a decoder's, out of memory) becomes one."""
        try:
            return self._raw_item(index)
        except SegtrainError:
            raise
        except Exception as e:  # noqa: BLE001 - decoders and numpy raise many kinds
            raise SegtrainError(f"{self.item_label(index)}: cannot read it ({describe_error(e)})") from None

    def _raw_item(self, index: int):
        image, label, label_path = self.load(self.items[index])
        self.check(image.shape[:2], label, label_path)
        if self.resize is None:
            return image, label
        size = resized_size(*image.shape[:2], *self.resize)
        image = resize_image(image, size)
        if not self.full_size_labels:
            stacked = torch.from_numpy(label.astype(np.float32)).reshape(1, -1, *label.shape[-2:])  # (1, tasks, H, W)
            label = F.interpolate(stacked, size=size, mode="nearest-exact").numpy().astype(label.dtype).reshape(
                *label.shape[:-2], *size)
        return image, label

    def finish(self, image: np.ndarray, label: np.ndarray):
        """(normalised float image (C, H, W), long label)."""
        return self.normalize(image), torch.from_numpy(label.astype(np.int64))

    def raw_fill(self):
        """The stored value of the mean, per channel: what augmentation pads images with (0 once normalised)."""
        return tuple(float(m * s) for m, s in zip(self.mean, self.scale))

    def __getitem__(self, index: int):
        return self.finish(*self.raw_item(index))


def rgb_mean(bgr_mean_255) -> tuple:
    """A Caffe-style BGR mean in 0..255 as the RGB mean in 0..1 that FileDataset subtracts."""
    return tuple(v / 255 for v in reversed(bgr_mean_255))
