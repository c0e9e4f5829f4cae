"""Masks as users store them, decoded to class indices (0..n-1, 255 = ignored) by the folder dataset's keys:

    dataset.mask_format     auto | index | rgb: values are class indices, or colours from the classes YAML
    dataset.label_values    [0, 255]: the stored value of class 0, 1, ... (index masks)
    dataset.ignore_values   [11]: stored values (or [R, G, B] colours) that mean void
    dataset.label_map       {7: 0, 8: 1, "[128,64,128]": 2}: many stored values (or colours) to one class
                            (colours on the command line as RxGxB: dataset.label_map={128x64x128:2})
    dataset.unmapped        error | ignore: a value label_map does not list
    dataset.mask_tolerance  8: a value (colour, per channel) this close to exactly one class's takes that class

Palette PNGs are decoded by their palette's colours where the file's palette disagrees with the classes YAML's
colours at the indices it uses (annotation tools and image editors renumber palettes file by file); a VOC-style
palette (index i has class i's colour) is read by index, and a grey palette (GIF masks) by its grey levels, the
values the picture shows.

Nothing is guessed: a value that is neither a class nor ignored, an unknown colour, a value within the tolerance
of two classes, or a 0/255 mask in a two-class dataset (is 255 the second class or void?) is an error naming the
file and the key that decides. No message proposes a setting that would merge, drop or swap classes: lossy masks
are pointed to dataset.mask_tolerance, never to ignoring their noise values."""
from pathlib import Path

import numpy as np

from ..errors import SegtrainError

IGNORE_INDEX = 255  # void: the label value no loss, metric or count takes (VOC's object borders)

MASK_FORMATS = ("auto", "index", "rgb")
UNMAPPED = ("error", "ignore")
LOSSY_SUFFIXES = (".jpg", ".jpeg")


def read_mask(path: Path):
    """(stored values, palette): (H, W) for palette, grey, 1-bit and 16-bit masks (indices, never palette
    colours), (H, W, 3) for colour masks (alpha dropped); the palette as (256, 3) uint8 for 'P' images, else
    None."""
    from PIL import Image, UnidentifiedImageError

    if not Path(path).is_file():
        raise SegtrainError(f"{path}: label file is missing")
    try:
        with Image.open(path) as image:
            if image.mode in ("RGB", "RGBA", "RGBX", "CMYK", "YCbCr"):
                return np.array(image.convert("RGB")), None
            if image.mode == "LA":
                return np.array(image.getchannel("L")), None
            if image.mode == "1":  # 1-bit masks hold 0 and 1
                return np.array(image).astype(np.uint8), None
            if image.mode == "P":
                colours = np.zeros((256, 3), np.uint8)
                listed = np.array(image.getpalette("RGB") or [], np.uint8).reshape(-1, 3)[:256]
                colours[:len(listed)] = listed
                return np.array(image), colours
            return np.array(image), None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise SegtrainError(f"{path}: cannot read the label image ({e})") from None


def parse_colour(key):
    """A label_map colour key ("[R,G,B]", "R,G,B", "RxGxB" or a 3-list) as a list, or None for a value."""
    if isinstance(key, (list, tuple)):
        values = list(key)
    elif isinstance(key, str) and ("," in key or "x" in key):
        values = key.strip().strip("[]()").replace("x", ",").split(",")
    else:
        return None
    try:
        colour = [int(v) for v in values]
    except (TypeError, ValueError):
        return None
    return colour if len(colour) == 3 and all(0 <= c <= 255 for c in colour) else None


def _colour_code(rgb) -> int:
    r, g, b = (int(c) for c in rgb)
    return (r << 16) | (g << 8) | b


def _colour_name(code: int) -> str:
    return f"({code >> 16}, {(code >> 8) & 255}, {code & 255})"


class LabelEncoding:
    """decode(stored mask, path, palette=None) -> (H, W) uint8 class indices with 255 for ignored pixels."""

    def __init__(self, class_names, colours=None, label_values=None, ignore_values=(), mask_format="auto",
                 classes_file=None, tolerance: int = 0, label_map=None, unmapped: str = "error"):
        self.class_names = tuple(class_names)
        self.num_classes = len(self.class_names)
        self.colours = list(colours) if colours is not None else [None] * self.num_classes
        self.classes_file = classes_file
        if mask_format not in MASK_FORMATS:
            raise SegtrainError(f"dataset.mask_format={mask_format}: expected one of {', '.join(MASK_FORMATS)}")
        if unmapped not in UNMAPPED:
            raise SegtrainError(f"dataset.unmapped={unmapped}: expected one of {', '.join(UNMAPPED)}")
        if int(tolerance) < 0:
            raise SegtrainError(f"dataset.mask_tolerance={tolerance}: expected a distance >= 0")
        self.mask_format, self.tolerance, self.unmapped = mask_format, int(tolerance), unmapped
        ignore_values = [v if isinstance(v, (int, float, str)) else list(v) for v in ignore_values or []]
        self.ignore_colours = {_colour_code(v) for v in ignore_values if isinstance(v, list) and len(v) == 3}
        self.ignore_values = {int(v) for v in ignore_values if not isinstance(v, list)}
        if any(isinstance(v, list) and len(v) != 3 for v in ignore_values):
            raise SegtrainError(f"dataset.ignore_values={ignore_values}: entries are values (11) or colours "
                                "([R, G, B])")
        self.label_values = None if label_values is None else [int(v) for v in label_values]
        self.value_map, self.colour_map = self._parse_label_map(label_map)
        if self.label_values is not None:
            if label_map:
                raise SegtrainError("dataset.label_values and dataset.label_map both say what the stored values "
                                    "mean; keep one (label_map for several values per class)")
            if len(self.label_values) != self.num_classes:
                raise SegtrainError(f"dataset.label_values={self.label_values} lists {len(self.label_values)} "
                                    f"values; expected one per class ({self.num_classes}: "
                                    f"{', '.join(self.class_names)})")
            if len(set(self.label_values)) != len(self.label_values) or set(self.label_values) & self.ignore_values:
                raise SegtrainError(f"dataset.label_values={self.label_values}: values must be distinct and not "
                                    f"in dataset.ignore_values")
        self.lut = self._lookup_table()

    def _parse_label_map(self, label_map):
        """({stored value: class}, {colour code: class}) from dataset.label_map."""
        if not label_map:  # none given (the config's default is an empty map)
            return None, None
        values, colours = {}, {}
        for key, cls in dict(label_map).items():
            if not (isinstance(cls, int) and (0 <= cls < self.num_classes or cls == IGNORE_INDEX)):
                raise SegtrainError(f"dataset.label_map: {key}: {cls} is not a class index (0..{self.num_classes - 1}"
                                    f", or {IGNORE_INDEX} for void)")
            colour = parse_colour(key)
            if colour is not None:
                colours[_colour_code(colour)] = cls
            elif isinstance(key, int) or (isinstance(key, str) and key.strip().isdigit()):
                values[int(key)] = cls
            else:
                raise SegtrainError(f"dataset.label_map: key {key!r} is neither a stored value (7) nor a colour "
                                    "('[R,G,B]')")
        return values, colours

    def signature(self) -> str:
        """What decoding depends on (keys the label-scan cache)."""
        return repr((self.num_classes, self.mask_format, self.label_values, sorted(self.ignore_values),
                     sorted(self.ignore_colours), self.colours, self.tolerance, self.value_map, self.colour_map,
                     self.unmapped))

    def _value_targets(self):
        """[(stored value, class or 255)]: what each exact index value means."""
        if self.value_map is not None:
            targets = list(self.value_map.items())
        elif self.label_values is not None:
            targets = [(value, index) for index, value in enumerate(self.label_values)]
        else:
            targets = [(index, index) for index in range(self.num_classes)] + [(IGNORE_INDEX, IGNORE_INDEX)]
        return targets + [(value, IGNORE_INDEX) for value in self.ignore_values]

    def _lookup_table(self) -> np.ndarray:
        """stored index value (0..65535) -> class, 255 (ignored), -1 (not allowed) or -2 (within the tolerance
        of two classes)."""
        targets = self._value_targets()
        for value, _ in targets:
            if not 0 <= value < 65536:
                raise SegtrainError(f"dataset.label_values/label_map: {value} is not a mask value (0..65535)")
        lut = np.full(65536, -1, np.int16)
        for value, cls in targets if self.tolerance else []:  # the class each value is within reach of
            window = slice(max(0, value - self.tolerance), value + self.tolerance + 1)
            lut[window] = np.where((lut[window] == -1) | (lut[window] == cls), cls, -2)
        for value, cls in targets:  # an exact value is its own class, whatever lies within the tolerance
            lut[value] = cls
        if self.value_map is not None and self.unmapped == "ignore":
            lut[lut == -1] = IGNORE_INDEX
        return lut

    def decode(self, stored: np.ndarray, path, palette=None) -> np.ndarray:
        if palette is not None and stored.ndim == 2 and self._by_palette_colour(stored, palette):
            return self.decode_palette(stored, palette, path)
        if palette is not None and stored.ndim == 2 and self.mask_format == "auto":
            used = np.flatnonzero(np.bincount(stored.ravel(), minlength=1))
            grey = palette[used]
            if (grey == grey[:, :1]).all() and not np.array_equal(grey[:, 0], used):
                # a grey palette (a GIF or an editor's 0/255 mask saved as indices 0, 1): its grey levels are
                # the values the picture shows, which label_values and ignore_values name
                stored = palette[:, 0][stored]
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

    def decode_palette(self, stored: np.ndarray, palette: np.ndarray, path) -> np.ndarray:
        """A palette mask by its colours; the void indices (dataset.ignore_values, and 255 unless its colour is a
        class colour, as in VOC's palette) stay void whatever their colour."""
        colours = palette.copy()
        void = sorted(v for v in self.ignore_values if 0 <= v < 256)
        class_codes = set(self.colour_map or {}) | {_colour_code(c) for c in self.colours if c is not None}
        if _colour_code(palette[IGNORE_INDEX]) not in class_codes:
            void.append(IGNORE_INDEX)
        stand_in = next(iter(self.colour_map)) if self.colour_map else _colour_code(
            next((c for c in self.colours if c is not None), (0, 0, 0)))
        colours[void] = [stand_in >> 16, (stand_in >> 8) & 255, stand_in & 255]  # decoded, then set void
        labels = self.decode_rgb(colours[stored], path, palette=True)
        labels[np.isin(stored, void)] = IGNORE_INDEX
        return labels

    def _by_palette_colour(self, stored: np.ndarray, palette: np.ndarray) -> bool:
        """Whether a palette mask is read by its colours: always with mask_format=rgb; with auto when the classes
        YAML gives every colour (or label_map colours), no key gives stored values, and the palette disagrees with
        the class colours at an index the file uses (void indices aside)."""
        if self.mask_format == "index":
            return False
        if self.mask_format == "rgb":
            return True
        if self.label_values is not None or self.value_map:
            return False
        if self.colour_map:
            return True
        if None in self.colours:
            return False
        used = np.flatnonzero(np.bincount(stored.ravel(), minlength=1))
        for index in used.tolist():
            if index == IGNORE_INDEX or index in self.ignore_values:
                continue
            if index >= self.num_classes or tuple(palette[index]) != tuple(self.colours[index]):
                return True
        return False

    def decode_index(self, stored: np.ndarray, path) -> np.ndarray:
        if stored.dtype.kind not in "ui" or (stored.size and (stored.min() < 0 or stored.max() > 65535)):
            raise SegtrainError(f"{path}: mask values must be whole numbers 0..65535 (found {stored.dtype})")
        if stored.dtype == np.uint8 and self.label_values is None and self.value_map is None \
                and not self.ignore_values and not self.tolerance and stored.size and stored.max() < self.num_classes:
            return stored  # class indices only (no void, no 255): nothing to map or ask
        stored = stored.astype(np.int64, copy=False) if stored.dtype.kind == "i" else stored
        counts = np.bincount(stored.ravel(), minlength=1)
        present = np.flatnonzero(counts)
        classes = self.lut[present]
        if (classes == -2).any():
            value = int(present[classes == -2][0])
            near = [str(v) for v, _ in self._value_targets() if abs(v - value) <= self.tolerance]
            raise SegtrainError(f"{path}: mask value {value} is within dataset.mask_tolerance={self.tolerance} of "
                                f"the values {', '.join(near)} of different classes; lower the tolerance")
        bad = present[classes < 0]
        if bad.size:
            raise SegtrainError(self._unknown_values_message(path, bad, present, counts))
        if (self.num_classes == 2 and self.label_values is None and self.value_map is None
                and IGNORE_INDEX not in self.ignore_values and IGNORE_INDEX in present
                and set(present.tolist()) <= {0, IGNORE_INDEX}):
            raise SegtrainError(
                f"{path}: the mask holds only 0 and 255 and the dataset has 2 classes ({', '.join(self.class_names)})"
                f": set dataset.label_values=[0,255] if 255 is '{self.class_names[1]}' (a 255 that means void "
                "belongs in dataset.ignore_values)")
        if np.array_equal(classes, present) and stored.dtype == np.uint8:
            return stored  # every value stands for itself (the usual index mask): nothing to map
        return self.lut[stored].astype(np.uint8)

    def _unknown_values_message(self, path, bad, present, counts) -> str:
        shown = ", ".join(str(int(v)) for v in bad[:8]) + (" ..." if bad.size > 8 else "")
        targets = sorted({v for v, _ in self._value_targets()})
        lossy = Path(path).suffix.lower() in LOSSY_SUFFIXES or looks_lossy(present, counts, targets)
        if lossy:
            return (f"{path}: mask values {shown} look like lossy compression (JPEG); "
                    + self._lossy_advice(present, counts))
        if self.value_map is not None:
            return (f"{path}: mask values {shown} are not in dataset.label_map; add them, or set "
                    "dataset.unmapped=ignore if every value it does not list is void")
        if self.label_values is None:
            return (f"{path}: mask values {shown} are outside the {self.num_classes} classes "
                    f"(0..{self.num_classes - 1}, {IGNORE_INDEX} = ignored); say what they are: "
                    f"dataset.ignore_values=[{int(bad[0])}] if {int(bad[0])} means void, dataset.label_values=[...] "
                    "(the stored value of each class), or dataset.label_map={VALUE:CLASS,...} if several values "
                    "share a class")
        return (f"{path}: mask values {shown} are neither in dataset.label_values={self.label_values} nor in "
                "dataset.ignore_values")

    def _lossy_advice(self, present, counts) -> str:
        """Only a setting that keeps every class: a tolerance below half the gap between class values."""
        if (self.num_classes == 2 and self.label_values is None and self.value_map is None
                and looks_lossy(present, counts, [0, 255])):
            return (f"its values gather near 0 and 255: if 255 is '{self.class_names[1]}', set "
                    "dataset.label_values=[0,255] dataset.mask_tolerance=127")
        values = sorted({v for v, _ in self._value_targets()})
        gap = min((b - a for a, b in zip(values, values[1:])), default=256)
        tolerance = (gap - 1) // 2
        if tolerance >= 1:
            return (f"set dataset.mask_tolerance={tolerance} (a value within it of one class's value takes that "
                    "class)")
        return (f"class values {gap} apart cannot be told apart after compression; store the masks losslessly "
                "(PNG)")

    def decode_rgb(self, stored: np.ndarray, path, grey: bool = False, palette: bool = False) -> np.ndarray:
        if self.colour_map:
            known = dict(self.colour_map)
        else:
            known = {_colour_code(c): index for index, c in enumerate(self.colours) if c is not None}
        codes = (stored[..., 0].astype(np.int32) << 16) | (stored[..., 1].astype(np.int32) << 8) | stored[..., 2]
        colours, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
        classes = np.array([known.get(int(c), IGNORE_INDEX if int(c) in self.ignore_colours else -1)
                            for c in colours], np.int16)
        if self.tolerance and (classes < 0).any():
            classes = self._snap_colours(colours, classes, known, path)
        if self.colour_map is not None and self.unmapped == "ignore":
            classes[classes < 0] = IGNORE_INDEX
        unknown = np.flatnonzero(classes < 0)
        if unknown.size:
            if None in self.colours and not self.colour_map:
                missing = [n for n, c in zip(self.class_names, self.colours) if c is None]
                raise SegtrainError(f"{path}: a colour mask needs every class's colour; dataset.classes="
                                    f"{self.classes_file} gives none for {', '.join(missing)}")
            first = unknown[0]
            hint = ""
            if grey:
                hint = " (the mask is grey: if its values are class indices, set dataset.mask_format=index)"
            if palette and 2 * unknown.size >= len(colours):  # most colours unknown: perhaps not colour-coded
                hint = (" (a palette PNG read by its colours; if its indices are class indices, set "
                        "dataset.mask_format=index)")
            if Path(path).suffix.lower() in LOSSY_SUFFIXES or unknown.size > 2 * max(1, len(known)):
                hint += (f"; {unknown.size} unknown colours look like lossy compression (JPEG): set "
                         f"dataset.mask_tolerance={self._colour_tolerance(known)} to take each colour's nearest "
                         "class colour")
            raise SegtrainError(
                f"{path}: colour {_colour_name(int(colours[first]))} ({int(counts[first])} pixels) is not a class "
                f"colour of dataset.classes={self.classes_file}" + (f" (and {unknown.size - 1} more colours)"
                                                                    if unknown.size > 1 else "")
                + f"; add it to the classes YAML, or to dataset.ignore_values as [R, G, B] if it is void{hint}")
        return classes[inverse].reshape(codes.shape).astype(np.uint8)

    def _targets_rgb(self, known: dict):
        codes = list(known) + sorted(self.ignore_colours)
        rgb = np.array([[c >> 16, (c >> 8) & 255, c & 255] for c in codes], np.int32).reshape(-1, 3)
        return rgb, np.array([known[c] for c in known] + [IGNORE_INDEX] * len(self.ignore_colours), np.int16)

    def _colour_tolerance(self, known: dict) -> int:
        """The largest per-channel tolerance under which no colour is within reach of two class colours."""
        rgb, classes = self._targets_rgb(known)
        gaps = [int(np.abs(a - b).max()) for i, a in enumerate(rgb) for j, b in enumerate(rgb)
                if i < j and classes[i] != classes[j]]
        return max(0, (min(gaps, default=256) - 1) // 2)

    def _snap_colours(self, colours, classes, known: dict, path):
        """Colours that are no class colour take the class whose colour is within the tolerance per channel."""
        rgb, target_classes = self._targets_rgb(known)
        classes = classes.copy()
        for i in np.flatnonzero(classes < 0):
            code = int(colours[i])
            colour = np.array([code >> 16, (code >> 8) & 255, code & 255], np.int32)
            within = np.flatnonzero(np.abs(rgb - colour).max(1) <= self.tolerance)
            reached = set(target_classes[within].tolist())
            if len(reached) > 1:
                raise SegtrainError(f"{path}: colour {_colour_name(code)} is within dataset.mask_tolerance="
                                    f"{self.tolerance} of the colours of several classes; lower the tolerance")
            if reached:
                classes[i] = reached.pop()
        return classes


LOSSY_SPREAD = 24  # how far compression noise strays from a stored value, for telling lossy masks apart


def looks_lossy(present, counts, targets) -> bool:
    """Many distinct values, nearly all of the pixels within LOSSY_SPREAD of the class values: compression noise
    around them, not values of their own."""
    if len(present) <= len(targets) + 4:
        return False
    near = np.min(np.abs(present[:, None] - np.asarray(targets)[None]), axis=1) <= LOSSY_SPREAD
    return counts[present][near].sum() >= 0.99 * counts[present].sum()
