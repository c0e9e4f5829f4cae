"""Masks as users store them, decoded to class indices (0..n-1, 255 = ignored) by the folder dataset's keys:

    dataset.mask_format    auto | index | rgb: values are class indices, or colours from the classes YAML
    dataset.label_values   [0, 255]: the stored value of class 0, 1, ... (index masks)
    dataset.ignore_values  [11]: stored values (or [R, G, B] colours) that mean void

Nothing is guessed: a value that is neither a class nor ignored, an unknown colour, or a 0/255 mask in a
two-class dataset (is 255 the second class or void?) is an error naming the file and the key that decides."""
from pathlib import Path

import numpy as np

from ..errors import SegtrainError
from .files import IGNORE_INDEX

MASK_FORMATS = ("auto", "index", "rgb")


def read_mask(path: Path) -> np.ndarray:
    """The stored values: (H, W) for palette, grey, 1-bit and 16-bit masks (indices, never palette colours),
    (H, W, 3) for colour masks (alpha dropped)."""
    from PIL import Image, UnidentifiedImageError

    if not Path(path).is_file():
        raise SegtrainError(f"{path}: label file is missing")
    try:
        with Image.open(path) as image:
            if image.mode in ("RGB", "RGBA", "RGBX", "CMYK", "YCbCr"):
                return np.array(image.convert("RGB"))
            if image.mode == "LA":
                return np.array(image.getchannel("L"))
            if image.mode == "1":  # 1-bit masks hold 0 and 1
                return np.array(image).astype(np.uint8)
            return np.array(image)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise SegtrainError(f"{path}: cannot read the label image ({e})") from None


def _colour_code(rgb) -> int:
    r, g, b = (int(c) for c in rgb)
    return (r << 16) | (g << 8) | b


def _colour_name(code: int) -> str:
    return f"({code >> 16}, {(code >> 8) & 255}, {code & 255})"


class LabelEncoding:
    """decode(stored mask, path) -> (H, W) uint8 class indices with 255 for ignored pixels."""

    def __init__(self, class_names, colours=None, label_values=None, ignore_values=(), mask_format="auto",
                 classes_file=None):
        self.class_names = tuple(class_names)
        self.num_classes = len(self.class_names)
        self.colours = list(colours) if colours is not None else [None] * self.num_classes
        self.classes_file = classes_file
        if mask_format not in MASK_FORMATS:
            raise SegtrainError(f"dataset.mask_format={mask_format}: expected one of {', '.join(MASK_FORMATS)}")
        self.mask_format = mask_format
        ignore_values = [v if isinstance(v, (int, float, str)) else list(v) for v in ignore_values or []]
        self.ignore_colours = {_colour_code(v) for v in ignore_values if isinstance(v, list) and len(v) == 3}
        self.ignore_values = {int(v) for v in ignore_values if not isinstance(v, list)}
        if any(isinstance(v, list) and len(v) != 3 for v in ignore_values):
            raise SegtrainError(f"dataset.ignore_values={ignore_values}: entries are values (11) or colours "
                                "([R, G, B])")
        self.label_values = None if label_values is None else [int(v) for v in label_values]
        if self.label_values is not None:
            if len(self.label_values) != self.num_classes:
                raise SegtrainError(f"dataset.label_values={self.label_values} lists {len(self.label_values)} "
                                    f"values; expected one per class ({self.num_classes}: "
                                    f"{', '.join(self.class_names)})")
            if len(set(self.label_values)) != len(self.label_values) or set(self.label_values) & self.ignore_values:
                raise SegtrainError(f"dataset.label_values={self.label_values}: values must be distinct and not "
                                    f"in dataset.ignore_values")
        self.lut = self._lookup_table()

    def signature(self) -> str:
        """What decoding depends on (keys the label-scan cache)."""
        return repr((self.num_classes, self.mask_format, self.label_values, sorted(self.ignore_values),
                     sorted(self.ignore_colours), self.colours))

    def _lookup_table(self) -> np.ndarray:
        """stored index value (0..65535) -> class, 255 (ignored) or -1 (not allowed)."""
        lut = np.full(65536, -1, np.int16)
        if self.label_values is None:
            lut[:self.num_classes] = np.arange(self.num_classes)
            lut[IGNORE_INDEX] = IGNORE_INDEX
        else:
            for index, value in enumerate(self.label_values):
                if not 0 <= value < 65536:
                    raise SegtrainError(f"dataset.label_values: {value} is not a mask value (0..65535)")
                lut[value] = index
        for value in self.ignore_values:
            if 0 <= value < 65536:
                lut[value] = IGNORE_INDEX
        return lut

    def decode(self, stored: np.ndarray, path) -> np.ndarray:
        if stored.ndim == 3:
            grey = (stored[..., 0] == stored[..., 1]).all() and (stored[..., 0] == stored[..., 2]).all()
            if self.mask_format == "index":
                if not grey:
                    raise SegtrainError(f"{path}: the mask is a colour image but dataset.mask_format=index; set "
                                        "dataset.mask_format=rgb to decode colours through the classes YAML")
                return self.decode_index(stored[..., 0], path)
            return self.decode_rgb(stored, path, grey)
        if self.mask_format == "rgb":
            raise SegtrainError(f"{path}: dataset.mask_format=rgb but the mask holds single values (indices); "
                                "set dataset.mask_format=index or auto")
        return self.decode_index(stored, path)

    def decode_index(self, stored: np.ndarray, path) -> np.ndarray:
        if stored.dtype.kind not in "ui" or (stored.size and (stored.min() < 0 or stored.max() > 65535)):
            raise SegtrainError(f"{path}: mask values must be whole numbers 0..65535 (found {stored.dtype})")
        if stored.dtype == np.uint8 and self.label_values is None and not self.ignore_values and stored.size \
                and stored.max() < self.num_classes:
            return stored  # class indices only (no void, no 255): nothing to map or ask
        stored = stored.astype(np.int64, copy=False) if stored.dtype.kind == "i" else stored
        present = np.flatnonzero(np.bincount(stored.ravel(), minlength=1))
        classes = self.lut[present]
        bad = present[classes < 0]
        if bad.size:
            shown = ", ".join(str(int(v)) for v in bad[:8]) + (" ..." if bad.size > 8 else "")
            if self.label_values is None:
                raise SegtrainError(
                    f"{path}: mask values {shown} are outside the {self.num_classes} classes "
                    f"(0..{self.num_classes - 1}, "
                    f"{IGNORE_INDEX} = ignored); set dataset.ignore_values=[{int(bad[0])}] if {int(bad[0])} means "
                    "void, or dataset.label_values=[...] (the stored value of each class)")
            raise SegtrainError(f"{path}: mask values {shown} are neither in dataset.label_values="
                                f"{self.label_values} nor in dataset.ignore_values")
        if (self.num_classes == 2 and self.label_values is None and IGNORE_INDEX not in self.ignore_values
                and IGNORE_INDEX in present and set(present.tolist()) <= {0, IGNORE_INDEX}):
            raise SegtrainError(
                f"{path}: the mask holds only 0 and 255 and the dataset has 2 classes ({', '.join(self.class_names)})"
                f": set dataset.label_values=[0,255] if 255 is '{self.class_names[1]}', or "
                "dataset.ignore_values=[255] if 255 is void")
        if np.array_equal(classes, present) and stored.dtype == np.uint8:
            return stored  # every value stands for itself (the usual index mask): nothing to map
        return self.lut[stored].astype(np.uint8)

    def decode_rgb(self, stored: np.ndarray, path, grey: bool = False) -> np.ndarray:
        known = {_colour_code(c): index for index, c in enumerate(self.colours) if c is not None}
        codes = (stored[..., 0].astype(np.int32) << 16) | (stored[..., 1].astype(np.int32) << 8) | stored[..., 2]
        colours, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
        classes = np.array([known.get(int(c), IGNORE_INDEX if int(c) in self.ignore_colours else -1)
                            for c in colours], np.int16)
        unknown = np.flatnonzero(classes < 0)
        if unknown.size:
            if None in self.colours:
                missing = [n for n, c in zip(self.class_names, self.colours) if c is None]
                raise SegtrainError(f"{path}: a colour mask needs every class's colour; dataset.classes="
                                    f"{self.classes_file} gives none for {', '.join(missing)}")
            first = unknown[0]
            hint = " (the mask is grey: if its values are class indices, set dataset.mask_format=index)" if grey \
                else ""
            raise SegtrainError(
                f"{path}: colour {_colour_name(int(colours[first]))} ({int(counts[first])} pixels) is not a class "
                f"colour of dataset.classes={self.classes_file}" + (f" (and {unknown.size - 1} more colours)"
                                                                    if unknown.size > 1 else "")
                + f"; add it to the classes YAML, or to dataset.ignore_values as [R, G, B] if it is void{hint}")
        return classes[inverse].reshape(codes.shape).astype(np.uint8)
