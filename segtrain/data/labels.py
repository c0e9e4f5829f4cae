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
from collections import Counter
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import SegtrainError

IGNORE_INDEX = 255  # void: the label value no loss, metric or count takes (VOC's object borders)

MASK_FORMATS = ("auto", "index", "rgb")
UNMAPPED = ("error", "ignore")


def read_mask(path: Path, with_alpha: bool = False):
    """(stored values, palette): (H, W) for palette, grey, 1-bit and 16-bit masks (indices, never palette
    colours), (H, W, 3) for colour masks (alpha dropped); the palette as (256, 3) uint8 for 'P' images, else
    None. with_alpha: a third element, the (H, W) bool of the pixels an RGBA mask leaves transparent (alpha 0),
    or None when it leaves none."""
    from PIL import Image, UnidentifiedImageError

    if not Path(path).is_file():
        raise SegtrainError(f"{path}: label file is missing")
    transparent = None
    try:
        with Image.open(path) as image:
            palette = None
            if image.mode == "RGBA":
                rgba = np.array(image.convert("RGBA"))
                stored = rgba[..., :3]
                transparent = rgba[..., 3] == 0 if (rgba[..., 3] == 0).any() else None
            elif image.mode in ("RGB", "RGBX", "CMYK", "YCbCr"):
                stored = np.array(image.convert("RGB"))
            elif image.mode == "LA":
                stored = np.array(image.getchannel("L"))
            elif image.mode == "1":  # 1-bit masks hold 0 and 1
                stored = np.array(image).astype(np.uint8)
            elif image.mode == "P":
                palette = np.zeros((256, 3), np.uint8)
                listed = np.array(image.getpalette("RGB") or [], np.uint8).reshape(-1, 3)[:256]
                palette[:len(listed)] = listed
                stored = np.array(image)
            else:
                stored = np.array(image)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise SegtrainError(f"{path}: cannot read the label image ({e})") from None
    return (stored, palette, transparent) if with_alpha else (stored, palette)


def lossy_format(path) -> Optional[str]:
    """'JPEG' or 'WebP' for a file stored with lossy compression, told by its header, not its name (a WebP is
    lossy when its image chunk is 'VP8 ', lossless when 'VP8L'; RIFF container, Google's WebP container spec);
    None for other files. A file that cannot be read is judged by its suffix."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if head[:3] == b"\xff\xd8\xff":
                return "JPEG"
            if head[:4] != b"RIFF" or head[8:12] != b"WEBP":
                return None
            while True:  # the chunks: a FourCC, a little-endian size, the payload padded to an even size
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                if chunk[:4] in (b"VP8 ", b"VP8L"):
                    return "WebP" if chunk[:4] == b"VP8 " else None
                size = int.from_bytes(chunk[4:], "little")
                f.seek(size + (size & 1), 1)
    except OSError:
        return "JPEG" if Path(path).suffix.lower() in (".jpg", ".jpeg") else None


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
        clash = sorted(set(self.value_map or {}) & self.ignore_values) + [
            _colour_name(c) for c in sorted(set(self.colour_map or {}) & self.ignore_colours)]
        if clash:
            raise SegtrainError(f"dataset.label_map gives a class to {clash[0]} and dataset.ignore_values makes it "
                                "void; keep one (in label_map, 255 means void)")
        self.lut = self._lookup_table()

    def _parse_label_map(self, label_map):
        """({stored value: class}, {colour code: class}) from dataset.label_map."""
        if not label_map:  # none given (the config's default is an empty map)
            return None, None
        values, colours, written = {}, {}, {}
        for key, cls in dict(label_map).items():
            if not (isinstance(cls, int) and (0 <= cls < self.num_classes or cls == IGNORE_INDEX)):
                raise SegtrainError(f"dataset.label_map: {key}: {cls} is not a class index (0..{self.num_classes - 1}"
                                    f", or {IGNORE_INDEX} for void)")
            colour = parse_colour(key)
            if colour is not None:
                table, stored = colours, _colour_code(colour)
                meaning = f"the colour {_colour_name(stored)}"
            elif isinstance(key, int) or (isinstance(key, str) and key.strip().isdigit()):
                table, stored = values, int(key)
                meaning = f"the stored value {stored}"
            else:
                raise SegtrainError(f"dataset.label_map: key {key} is neither a stored value (7) nor a colour "
                                    "(128x64x128, or '[128,64,128]' in a YAML)")
            if meaning in written:  # 7 and 007: one would silently replace the other
                raise SegtrainError(f"dataset.label_map: keys {written[meaning]} and {key} both give {meaning} a "
                                    "class; keep one")
            written[meaning] = key
            table[stored] = cls
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

    def decode(self, stored: np.ndarray, path, palette=None, transparent=None) -> np.ndarray:
        """Class indices (H, W) uint8 of a stored mask (read_mask's values and palette; `transparent`: the pixels an
        RGBA mask leaves transparent, named in errors). Raises SegtrainError naming the file and the key that
        decides."""
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
            return self.decode_rgb(stored, path, grey, transparent=transparent)
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
        YAML gives every colour (or label_map colours), no key gives stored values, the palette disagrees with the
        class colours at an index the file uses (void indices aside), and it is not a grey palette of other
        greys than the class colours (read by its grey levels, as a GIF is)."""
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
        shown = palette[used]
        class_codes = {_colour_code(c) for c in self.colours}
        if (shown == shown[:, :1]).all() and not {_colour_code(c) for c in shown} <= class_codes:
            return False  # a grey palette (GIFs; indices saved with a grey ramp): its grey levels are the values
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
            raise SegtrainError(self._within_two_message(path, stored, int(present[classes == -2][0])))
        bad = present[classes < 0]
        if bad.size:
            raise SegtrainError(self._unknown_values_message(path, stored, bad, present))
        if (self.num_classes == 2 and self.label_values is None and self.value_map is None
                and IGNORE_INDEX not in self.ignore_values and IGNORE_INDEX in present
                and set(present.tolist()) <= {0, IGNORE_INDEX}):
            raise SegtrainError(
                f"{path}: the mask holds only 0 and 255 and the dataset has 2 classes ({', '.join(self.class_names)})"
                f": set dataset.label_values=[0,255] if 255 is '{self.class_names[1]}' (a 255 that means void "
                "belongs in dataset.ignore_values; if other masks store the class as 1, set "
                f"{argument('dataset.label_map', {0: 0, 1: 1, 255: 1})} instead)")
        if np.array_equal(classes, present) and stored.dtype == np.uint8:
            return stored  # every value stands for itself (the usual index mask): nothing to map
        return self.lut[stored].astype(np.uint8)

    def _within_two_message(self, path, stored, value) -> str:
        near = [str(v) for v, _ in self._value_targets() if abs(v - value) <= self.tolerance]
        head = (f"{path}: mask value {value} is within dataset.mask_tolerance={self.tolerance} of the values "
                f"{', '.join(near)} of different classes")
        if lossy_format(path) or looks_lossy(stored):
            return f"{head}; the mask looks lossy: {self._lossy_advice(stored)}"
        widest = widest_tolerance(self._value_targets())
        return head + (f"; lower the tolerance to {widest} or below" if widest else
                       "; class values 1 apart leave no tolerance: set dataset.mask_tolerance=0")

    def _unknown_values_message(self, path, stored, bad, present) -> str:
        shown = ", ".join(str(int(v)) for v in bad[:8]) + (" ..." if bad.size > 8 else "")
        kind = lossy_format(path)
        if kind or looks_lossy(stored):
            how = f"look like lossy compression ({kind})" if kind else \
                "look like the blends of resized or recompressed masks"
            return f"{path}: mask values {shown} {how}; {self._lossy_advice(stored)}"
        if self.value_map is not None:
            return (f"{path}: mask values {shown} are not in dataset.label_map; add them, or set "
                    "dataset.unmapped=ignore if every value it does not list is void")
        if self.label_values is None:
            return (f"{path}: mask values {shown} are outside the {self.num_classes} classes "
                    f"(0..{self.num_classes - 1}, {IGNORE_INDEX} = ignored); say what they are: "
                    f"dataset.ignore_values=[{int(bad[0])}] if {int(bad[0])} means void, dataset.label_values=[...] "
                    "(the stored value of each class), or dataset.label_map={VALUE:CLASS,...} if several values "
                    "share a class")
        message = (f"{path}: mask values {shown} are neither in dataset.label_values={self.label_values} nor in "
                   "dataset.ignore_values")
        indices = {value: index for index, value in enumerate(self.label_values)}
        mixed = {index: index for index in range(self.num_classes)}
        if set(present.tolist()) <= set(mixed) | set(indices) and all(
                indices.get(index, index) == index for index in mixed):  # this mask stores class indices
            mixed.update(indices)
            message += (f"; the mask holds class indices: if some masks store the classes as indices and others as "
                        f"dataset.label_values, set {argument('dataset.label_map', mixed)} instead of "
                        "dataset.label_values")
        return message

    def _lossy_advice(self, stored) -> str:
        """What reads a lossy index mask, the same for every file of a dataset: the tolerance that keeps the class
        values apart (the class values first, where no key gives them: the values its regions hold); never a
        setting that merges, drops or swaps classes."""
        given = self.label_values is not None or self.value_map is not None
        if not given:
            modes = mask_modes(stored)
            widest = widest_tolerance(list(zip(modes, range(len(modes)))))
            if len(modes) < 2 or widest < 1:
                return ("class values 1 apart (class indices) cannot be told apart after compression; store the "
                        "masks losslessly (PNG)")
            values = ", ".join(map(str, modes))
            if len(modes) != self.num_classes:
                return (f"its values gather near {values} but dataset.classes lists {self.num_classes} classes; set "
                        "dataset.label_values (each class's stored value) and dataset.mask_tolerance below half "
                        "their smallest gap (segtrain-data inspect finds both from every mask)")
            names = ", ".join(f"'{n}'" for n in self.class_names[:-1]) + f" and '{self.class_names[-1]}'" \
                if self.num_classes <= 4 else "the classes"
            return (f"its values gather near {values}: if they are {names} in this order, set "
                    f"dataset.label_values=[{','.join(map(str, modes))}] dataset.mask_tolerance={widest}")
        targets = self._value_targets()
        widest = widest_tolerance(targets)
        if widest < 1:
            return ("class values 1 apart cannot be told apart after compression; store the masks losslessly "
                    "(PNG)")
        counts = np.bincount(stored.ravel())
        present = np.flatnonzero(counts)
        values = np.array([v for v, _ in targets])
        far = int(counts[present[np.abs(present[:, None] - values[None]).min(1) > widest]].sum())
        keys = [f"dataset.mask_tolerance={widest}"] if self.tolerance != widest else []
        if far and not (self.value_map is not None and self.unmapped == "ignore"):
            if self.label_values is not None:
                keys.append(argument("dataset.label_map", dict(targets)) + " (instead of dataset.label_values)")
            keys.append("dataset.unmapped=ignore")
        return (f"set {' '.join(keys)} (a value within {widest} of one class's value takes that class"
                + (f"; the {far} pixels farther from every class's value, edges compression blended, become void)"
                   if far else ")"))

    def decode_rgb(self, stored: np.ndarray, path, grey: bool = False, palette: bool = False,
                   transparent=None) -> np.ndarray:
        if self.colour_map:
            known = dict(self.colour_map)
        else:
            known = {_colour_code(c): index for index, c in enumerate(self.colours) if c is not None}
        codes = (stored[..., 0].astype(np.int32) << 16) | (stored[..., 1].astype(np.int32) << 8) | stored[..., 2]
        colours, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
        inverse = inverse.reshape(codes.shape)
        classes = np.array([known.get(int(c), IGNORE_INDEX if int(c) in self.ignore_colours else -1)
                            for c in colours], np.int16)
        if self.tolerance and (classes < 0).any():
            classes = self._snap_colours(colours, counts, classes, known, path)
        if self.colour_map is not None and self.unmapped == "ignore":
            classes[classes < 0] = IGNORE_INDEX
        unknown = np.flatnonzero(classes < 0)
        if unknown.size:
            if None in self.colours and not self.colour_map:
                missing = [n for n, c in zip(self.class_names, self.colours) if c is None]
                raise SegtrainError(f"{path}: a colour mask needs every class's colour; dataset.classes="
                                    f"{self.classes_file} gives none for {', '.join(missing)}")
            raise SegtrainError(self._unknown_colours_message(path, colours, counts, unknown, known, grey, palette,
                                                              inverse, transparent))
        return classes[inverse].astype(np.uint8)

    def _unknown_colours_message(self, path, colours, counts, unknown, known, grey, palette, inverse,
                                 transparent) -> str:
        first = unknown[np.argmax(counts[unknown])]
        name = f"colour {_colour_name(int(colours[first]))} ({int(counts[first])} pixels)"
        if transparent is not None:
            hidden = np.bincount(inverse[transparent], minlength=len(colours))
            if (hidden[unknown] == counts[unknown]).all():  # drawn nowhere: the mask's transparent pixels
                mapping = {colour_key(c): index for c, index in known.items()}
                mapping[colour_key(colours[first])] = 0
                rgb = [int(c) for c in colour_key(colours[first]).split("x")]
                return (f"{path}: {name} is transparent (alpha 0) wherever it occurs: the mask leaves those pixels "
                        f"unlabelled; if they are '{self.class_names[0]}', set {argument('dataset.label_map', mapping)}"
                        f"; if they are void, set {argument('dataset.ignore_values', [rgb])}")
        kind = lossy_format(path)
        if kind or unknown.size > 2 * max(1, len(known)):
            return (f"{path}: colours that are no class colour of dataset.classes={self.classes_file} ({unknown.size}"
                    f"; the commonest: {name}) look like lossy compression ({kind or 'JPEG'}): "
                    + self._colour_lossy_advice(colours, counts, known))
        head = (f"{path}: {name} is not a class colour of dataset.classes={self.classes_file}"
                + (f" (and {unknown.size - 1} more colours)" if unknown.size > 1 else ""))
        if palette and 2 * unknown.size >= len(colours):  # most colours unknown: perhaps not colour-coded
            return (f"{head}; a palette PNG read by its colours: if its indices are class indices, set "
                    "dataset.mask_format=index; else add its colours to the classes YAML")
        if grey:
            return (f"{head}; the mask is grey: if its values are class indices, set dataset.mask_format=index; "
                    "else add its colours to the classes YAML")
        return (f"{head}; add it to the classes YAML if it is a class of its own, or to dataset.ignore_values as "
                "[R, G, B] if it is void")

    def _colour_lossy_advice(self, colours, counts, known: dict) -> str:
        """What reads a lossy colour mask, the same for every file: the widest tolerance that keeps the class
        colours apart, and a label map of them that makes the colours out of its reach (blended edges) void."""
        widest = self._colour_tolerance(known)
        if widest < 1:
            return "class colours 1 apart cannot be told apart after compression; store the masks losslessly (PNG)"
        rgb, _ = self._targets_rgb(known)
        found = np.stack([colours >> 16, (colours >> 8) & 255, colours & 255], 1).astype(np.int32)
        far = int(counts[np.abs(found[:, None] - rgb[None]).max(2).min(1) > widest].sum())
        keys = [f"dataset.mask_tolerance={widest}"] if self.tolerance != widest else []
        if not self.colour_map:
            keys.append(argument("dataset.label_map", {colour_key(c): index for c, index in known.items()}))
        if self.unmapped != "ignore":
            keys.append("dataset.unmapped=ignore")
        return (f"set {' '.join(keys)} to take each colour's nearest class colour within {widest}; colours farther "
                f"from every class colour (edges compression blended: {far} pixels here) become void")

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

    def _snap_colours(self, colours, counts, classes, known: dict, path):
        """Colours that are no class colour take the class whose colour is within the tolerance per channel."""
        rgb, target_classes = self._targets_rgb(known)
        classes = classes.copy()
        for i in np.flatnonzero(classes < 0):
            code = int(colours[i])
            colour = np.array([code >> 16, (code >> 8) & 255, code & 255], np.int32)
            within = np.flatnonzero(np.abs(rgb - colour).max(1) <= self.tolerance)
            reached = set(target_classes[within].tolist())
            if len(reached) > 1:
                widest = self._colour_tolerance(known)
                raise SegtrainError(f"{path}: colour {_colour_name(code)} is within dataset.mask_tolerance="
                                    f"{self.tolerance} of the colours of several classes; " + (
                                        self._colour_lossy_advice(colours, counts, known) if widest else
                                        "class colours 1 apart leave no tolerance: set dataset.mask_tolerance=0"))
            if reached:
                classes[i] = reached.pop()
        return classes


def argument(key: str, value) -> str:
    """`key=value` as one command-line word (segtrain.config.override_argument), for advice in messages."""
    from ..config import override_argument

    return override_argument(key, value)


def colour_key(code) -> str:
    """A colour code as label_map writes it on the command line: RxGxB."""
    code = int(code)
    return f"{code >> 16}x{(code >> 8) & 255}x{code & 255}"


def widest_tolerance(targets) -> int:
    """The largest dataset.mask_tolerance under which no value is within reach of the values of two classes:
    below half the smallest gap between values of different classes, at most 127 (a threshold between 0 and 255);
    targets: [(stored value, class)]."""
    ordered = sorted(targets)
    gaps = [b - a for (a, p), (b, q) in zip(ordered, ordered[1:]) if p != q]
    return max(0, min(127, (min(gaps, default=256) - 1) // 2))


LOSSY_SPREAD = 24  # how far compression noise strays from a stored value, for telling lossy masks apart


def value_distance(a, b) -> int:
    """|a - b| of two stored values."""
    return abs(int(a) - int(b))


def colour_distance(a, b) -> int:
    """The largest per-channel difference of two colour codes (R<<16 | G<<8 | B; the tolerance's distance)."""
    a, b = int(a), int(b)
    return max(abs((a >> s & 255) - (b >> s & 255)) for s in (16, 8, 0))


def centres(codes: np.ndarray, counts: np.ndarray, distance, share: float = 0.001, colours: bool = False,
            cells: bool = True):
    """The stored values (colours) compression scattered: codes counted in cells of 8 (per channel; each code
    alone without `cells`), the fullest cells holding at least `share` of the pixels, each farther than
    LOSSY_SPREAD (colours: twice, their chroma being blurred more) from a fuller one, give the centres: the
    commonest code of each."""
    if not cells:
        cells = codes
    elif colours:
        cells = (((codes >> 19) & 31) << 10) | (((codes >> 11) & 31) << 5) | ((codes >> 3) & 31)
    else:
        cells = codes >> 3
    mass, commonest = Counter(), {}
    for cell, code, count in zip(cells.tolist(), codes.tolist(), counts.tolist()):
        mass[cell] += count
        if count > commonest.get(cell, (0, 0))[1]:
            commonest[cell] = (code, count)
    spread = 2 * LOSSY_SPREAD if colours else LOSSY_SPREAD
    chosen, total = [], counts.sum()
    for cell, count in mass.most_common():
        if count < share * total:
            break
        if all(distance(commonest[cell][0], c) > spread for c in chosen):
            chosen.append(commonest[cell][0])
    return sorted(int(c) for c in chosen)


def flat_pixels(pixels: np.ndarray, within: int = 8) -> np.ndarray:
    """Pixels whose 4-neighbours all lie within `within` (per channel): the inside of regions, where compression
    keeps a class's value (colour); edges blend their neighbours'."""
    pixels = pixels.astype(np.int32).reshape(*pixels.shape[:2], -1)
    steepest = np.zeros(pixels.shape[:2], np.int32)
    for a, b in (((slice(None), slice(1, None)), (slice(None), slice(None, -1))),
                 ((slice(1, None), slice(None)), (slice(None, -1), slice(None)))):
        step = np.abs(pixels[a] - pixels[b]).max(-1)
        steepest[a] = np.maximum(steepest[a], step)
        steepest[b] = np.maximum(steepest[b], step)
    return steepest <= within


def blended_pixels(pixels: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels whose value lies strictly between their 4-neighbours' (per channel: within their range
    in every channel, strictly inside it in one), as interpolation and compression leave along edges; never the
    inside of a region, whose neighbours share its value."""
    pixels = pixels.astype(np.int32).reshape(*pixels.shape[:2], -1)
    padded = np.pad(pixels, ((1, 1), (1, 1), (0, 0)), mode="edge")
    around = np.stack([padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]])
    low, high = around.min(0), around.max(0)
    return ((low <= pixels) & (pixels <= high)).all(-1) & ((low < pixels) & (pixels < high)).any(-1)


ROUND = (255, 128, 100, 64, 50, 32, 25, 10, 5)  # how round a stored value is: 0 and 255 first, then multiples


def roundest(value: int, reach: int = 4) -> int:
    """The roundest value within `reach` of `value` (0 and 255 first, then multiples of 128, 100, 64, ...; the nearest
    among equals): the value a class was most likely stored as, where compression moved its regions' commonest
    value by a step or two."""
    near = range(max(0, value - reach), value + reach + 1)
    return min(near, key=lambda v: (next((i for i, step in enumerate(ROUND) if v % step == 0), len(ROUND)),
                                    abs(v - value)))


def mask_modes(stored: np.ndarray):
    """The values a lossy index mask's classes were stored as: the peaks of its histogram (the pixels within 8 of a
    value, at least 2% of the mask; the next peak farther than twice LOSSY_SPREAD), each the median of the values
    within LOSSY_SPREAD of its peak, then the roundest value within 8 of that (compression scatters a region's
    values around the one stored)."""
    counts = np.bincount(stored.astype(np.int64).ravel())
    around = np.convolve(counts, np.ones(17, np.int64), "same")
    modes = []
    while around.size and around.max() >= 0.02 * stored.size:
        peak = int(around.argmax())
        low = max(0, peak - LOSSY_SPREAD)
        near = counts[low:peak + LOSSY_SPREAD + 1]
        median = low + int(np.searchsorted(np.cumsum(near), near.sum() / 2))
        modes.append(roundest(median, reach=8))
        around[max(0, peak - 2 * LOSSY_SPREAD):peak + 2 * LOSSY_SPREAD + 1] = 0
    return sorted(set(modes))


def looks_lossy(stored: np.ndarray) -> bool:
    """Many distinct values (colours) beside the few that hold most pixels, and nearly all the others blends
    (blended_pixels): what resizing or compression leaves of a few stored values, not values of their own, which
    fill regions."""
    codes = stored.astype(np.int64)
    if codes.ndim == 3:
        codes = (codes[..., 0] << 16) | (codes[..., 1] << 8) | codes[..., 2]
    found, counts = np.unique(codes, return_counts=True)
    modes = found[counts >= 0.02 * codes.size]
    if len(found) < len(modes) + 8 or counts[np.isin(found, modes)].sum() < 0.5 * codes.size:
        return False
    rest = ~np.isin(codes, modes)
    return bool(blended_pixels(stored)[rest].mean() >= 0.8)
