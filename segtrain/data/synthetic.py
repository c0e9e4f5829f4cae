"""Built-in procedural scenes: no files, deterministic in (seed, split, index).

Each scene is a noisy colour-gradient background with large blocks and discs, thin wires and small dots, each
class in its own (jittered) colour family. The pixel on either side of every label edge is 255 and ignored, as
VOC labels object borders. Wires and dots are a few pixels wide: a network scoring at stride 32 cannot draw them,
one that fuses stride-8 scores can, which is the point FCN's skip connections make.
"""
import numpy as np
import torch
from torch.utils.data import Dataset

from .files import Normalize
from .labels import IGNORE_INDEX
from .palette import voc_palette

CLASS_NAMES = ("background", "block", "disc", "wire", "dot")
# One table for drawing and painting: the range each object class's colour is drawn from in the scenes (low, high
# RGB, before the noise), and the palette entry its labels are painted in (overlays, TensorBoard panels, the data
# preview), the middle of that range. Background stays black, as in the VOC palette.
CLASS_COLOURS = {
    1: ((170, 20, 20), (255, 90, 90)),  # block: red
    2: ((170, 170, 20), (255, 255, 90)),  # disc: yellow
    3: ((20, 150, 20), (90, 255, 90)),  # wire: green
    4: ((20, 20, 150), (90, 90, 255)),  # dot: blue
}
SPLIT_OFFSETS = {"train": 0, "val": 1_000_003}  # distinct seeds per split, so val scenes never repeat train ones


def scene_palette() -> torch.Tensor:
    """(256, 3) uint8: the VOC palette with the object classes' entries in the colours the scenes draw them in
    (CLASS_COLOURS), so that a painted label has its object's colour."""
    palette = voc_palette()
    for cls, (low, high) in CLASS_COLOURS.items():
        palette[cls] = torch.tensor([(a + b) // 2 for a, b in zip(low, high)], dtype=torch.uint8)
    return palette


def _max_filter3(values: np.ndarray) -> np.ndarray:
    """3x3 maximum, edges repeated."""
    padded = np.pad(values, 1, mode="edge")
    h, w = values.shape
    return np.max([padded[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)], axis=0)


def _segment_distance(yy, xx, y0, x0, y1, x1):
    dy, dx = y1 - y0, x1 - x0
    t = np.clip(((yy - y0) * dy + (xx - x0) * dx) / max(dy * dy + dx * dx, 1e-6), 0, 1)
    return np.hypot(yy - (y0 + t * dy), xx - (x0 + t * dx))


def render_scene(rng: np.random.Generator, size: int):
    """(H, W, 3) uint8 image and (H, W) uint8 label map."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    # background: smooth random colour gradient plus noise
    corners = rng.uniform(30, 140, size=(2, 2, 3))
    fy, fx = (yy / size)[..., None], (xx / size)[..., None]
    image = (corners[0, 0] * (1 - fy) * (1 - fx) + corners[0, 1] * (1 - fy) * fx
             + corners[1, 0] * fy * (1 - fx) + corners[1, 1] * fy * fx)
    label = np.zeros((size, size), np.int16)

    def paint(mask, cls, low, high):
        nonlocal image
        image = np.where(mask[..., None], rng.uniform(low, high), image)
        label[mask] = cls

    for _ in range(rng.integers(1, 4)):
        cy, cx = rng.uniform(0, size, 2)
        if rng.random() < 0.5:  # block: axis-aligned rectangle
            hh, hw = rng.uniform(0.12, 0.25, 2) * size
            paint((np.abs(yy - cy) < hh) & (np.abs(xx - cx) < hw), 1, *CLASS_COLOURS[1])
        else:  # disc: ellipse
            ry, rx = rng.uniform(0.12, 0.25, 2) * size
            paint(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1, 2, *CLASS_COLOURS[2])
    for _ in range(rng.integers(1, 4)):  # wire: a thin straight segment, 4 to 6 px wide
        y0, x0, y1, x1 = rng.uniform(0, size, 4)
        radius = rng.uniform(2.0, 3.0)
        paint(_segment_distance(yy, xx, y0, x0, y1, x1) < radius, 3, *CLASS_COLOURS[3])
    for _ in range(rng.integers(2, 7)):  # dot: a small square, 6 to 9 px wide
        cy, cx = rng.uniform(0, size, 2)
        half = rng.uniform(3.0, 4.5)
        paint((np.abs(yy - cy) < half) & (np.abs(xx - cx) < half), 4, *CLASS_COLOURS[4])
    image = image + rng.normal(0, 12, image.shape)
    border = _max_filter3(label) != -_max_filter3(-label)  # the pixel on either side of every edge
    label[border] = IGNORE_INDEX
    return np.clip(image, 0, 255).astype(np.uint8), label.astype(np.uint8)


class SyntheticScenes(Dataset):
    """Scenes rendered on demand; item i of a split is the same image and label on every call and machine."""

    class_names = CLASS_NAMES
    ignore_index = IGNORE_INDEX
    mean = (0.5, 0.5, 0.5)
    std = (0.25, 0.25, 0.25)
    input_channels = (3,)
    tasks = None

    def __init__(self, split: str, num_images: int, image_size: int, seed: int):
        if split not in SPLIT_OFFSETS:
            raise ValueError(f"synthetic dataset split {split!r}: expected one of {sorted(SPLIT_OFFSETS)}")
        self.split, self.num_images, self.image_size = split, num_images, image_size
        self.seed = seed + SPLIT_OFFSETS[split]
        self.palette = scene_palette()
        self.normalize = Normalize(self.mean, self.std, (255.0,) * 3)

    def __len__(self):
        return self.num_images

    def raw_item(self, index: int):
        """(image (H, W, 3) uint8, label (H, W) uint8): what augmentation transforms before finish()."""
        return render_scene(np.random.default_rng([self.seed, index]), self.image_size)

    def finish(self, image: np.ndarray, label: np.ndarray):
        return self.normalize(image), torch.from_numpy(np.ascontiguousarray(label)).long()

    def raw_fill(self):
        return tuple(255 * m for m in self.mean)

    def __getitem__(self, index: int):
        return self.finish(*self.raw_item(index))
