"""segtrain.Segmenter: a trained checkpoint in Python code, the one code path of segtrain-predict too. It reads
an image as the model's training data were read (EXIF orientation, channels, bit depth and intensity scaling,
dataset.scale / dataset.short_side), scores it (whole, slide or multiscale inference), refines it with the dense
CRF when asked, and gives labels at the image's own size:

    from segtrain import Segmenter

    segmenter = Segmenter.from_checkpoint("outputs/RUN/checkpoints/best.pt")
    labels = segmenter.predict("photo.jpg")             # (H, W) uint8 class indices
    segmenter.overlay("photo.jpg", labels).save("overlay.png")

This module imports torch only when a Segmenter is made, so `import segtrain` stays light."""
import os
from typing import NamedTuple

import numpy as np

from .errors import SegtrainError


class Picture(NamedTuple):
    """An image read as its model's training data were."""
    rgb: np.ndarray  # (H, W, 3) uint8: what overlays are drawn on (a grey model's image as grey)
    pixels: np.ndarray  # (H, W, C) as stored: uint8, or uint16 / float for a grey model
    scale: tuple  # each channel's full intensity in `pixels` (255.0, 65535.0): the network sees pixels / scale


def overlay_options(alpha: float, skip_classes, class_names):
    """(alpha, classes to leave unpainted) from alpha= and skip_classes= (None: the background class)."""
    if not 0 <= alpha <= 1:
        raise SegtrainError(f"alpha={alpha}: expected a number in [0, 1]")
    if skip_classes is None:
        return alpha, {class_names.index("background")} if "background" in class_names else set()
    skip = set()
    for entry in (str(e).strip() for e in skip_classes):
        if entry in class_names:
            skip.add(class_names.index(entry))
        elif entry.isdigit() and int(entry) < len(class_names):
            skip.add(int(entry))
        else:
            raise SegtrainError(f"skip_classes: {entry!r} is not a class of this checkpoint ({', '.join(class_names)})")
    return alpha, skip


def network_input(rgb, normalize, resize=None):
    """An RGB image (H, W, 3) uint8 as the datasets give the network theirs: resized when the network was trained
    so (resize: dataset.scale, dataset.short_side), then normalised. Its labels come back at full size."""
    from .data.files import resize_image, resized_size

    return normalize(rgb if resize is None else resize_image(rgb, resized_size(*rgb.shape[:2], *resize)))


def read_input(source, grey: bool, info: dict, exif: bool, intensity_range, name=None) -> Picture:
    """A file (or PIL image) read as the model's training data were: RGB, or one grey channel for a grey model (a
    colour file's luminance), each file scaled from its own bit depth by `intensity_range` (8, 16, 32-bit integer
    or float) to the depth the model's training images were held at (its full intensity, 255 or 65535). `name`:
    what an error calls the image (default: its path)."""
    from .data.files import GREY, read_image, to_depth

    if not grey:
        rgb = read_image(source, exif=exif, intensity_range=intensity_range)
        return Picture(rgb, rgb, tuple(info.get("scale") or (255.0,) * 3))
    name = name or (source if isinstance(source, (str, os.PathLike)) else
                    getattr(source, "filename", "") or "the PIL image")
    stored = read_image(source, mode=GREY, exif=exif)
    # checkpoints before the scale was stored: as the folder dataset decided it, by the file's depth
    full = int((info.get("scale") or [255.0 if stored.dtype == np.uint8 else 65535.0])[0])
    pixels = to_depth(stored, intensity_range, name, full)
    shown = to_depth(pixels, "auto", name, warn=False)  # 8 bits for the overlay: a dark one is no problem
    return Picture(np.repeat(shown[..., None], 3, axis=2), pixels[..., None], (float(full),))


class Segmenter:
    """A trained segtrain checkpoint for Python code: `Segmenter.from_checkpoint(path)`, then predict(image),
    predict_proba(image), predict_batch(images) and overlay(image, labels). segtrain-predict labels its files
    through it, so the two give the same labels.

    An image is one of:
      - a path (str or os.PathLike) of an image file, read as the checkpoint's training data were: its EXIF
        orientation applied (dataset.exif_orientation), RGB for an RGB model (a grey file's grey copied to the
        three channels; a 16-bit or float file scaled to 8 bits by dataset.intensity_range), one channel for a grey
        model (a colour file's luminance, ITU-R 601-2 as PIL converts it); every file scaled from its own bit
        depth (8, 16, 32-bit integer, float) by dataset.intensity_range, as training read it;
      - a PIL image: as the file it is (an opened file's EXIF orientation too);
      - a numpy array (H, W) or (H, W, 3) ((H, W, 1) reads as (H, W)):
          uint8   8-bit intensities, as an 8-bit file;
          uint16  16-bit intensities, as a 16-bit file: scaled by the checkpoint's dataset.intensity_range (auto:
                  0..65535 is 0..full intensity) to the depth the model's training images were held at;
          float   fractions of full intensity, 0..1 (float16/32/64): an RGB model rounds them to 8 bits (v * 255),
                  a grey model takes v x its full intensity; with dataset.intensity_range=[LO, HI] or percentile
                  both scale them as a float file is scaled. Values outside 0..1 under intensity_range=auto, NaN or
                  infinity are an error.
        Other dtypes, other channel counts ((H, W, 4): RGBA or four channels?), colour (H, W, 3) uint16 or float
        arrays for a grey model, and empty arrays are a SegtrainError naming what to pass instead.

    Labels come back at the image's own size (as shown, after EXIF): a network trained on resized images
    (dataset.scale, dataset.short_side) scores the image resized the same way and its scores are upsampled
    bilinearly. A multi-stream checkpoint (RGB-D, RGB-HHA) and one of two heads (SIFT Flow's dataset.task=both)
    are refused: segtrain-eval evaluates them."""

    def __init__(self, model, train_cfg, info: dict, device, inference=None, crf=None, name: str = "checkpoint"):
        """Use Segmenter.from_checkpoint. `model` in eval mode, `train_cfg` its training config, `info` the
        checkpoint's dataset facts (segtrain.data.dataset_info), `inference` predict_scores's keywords (mode,
        tile, overlap, scales, flip), `crf` a checked crf config of name dense, or None."""
        from .engine import autocast_context
        from .runtime import select_amp

        if info["input_channels"] not in ([3], [1]):
            raise SegtrainError(f"{name}: the model takes {info['input_channels']} input streams "
                                f"({train_cfg.dataset.name} with dataset.modality={train_cfg.dataset.get('modality')})"
                                "; Segmenter and segtrain-predict read one RGB or grey image per input: evaluate it "
                                "with segtrain-eval")
        if train_cfg.dataset.get("task") == "both":
            raise SegtrainError(f"{name}: the model has two heads (dataset.task=both: semantic and geometric "
                                "classes); Segmenter and segtrain-predict label one task: evaluate it with "
                                "segtrain-eval")
        self.model, self.train_cfg, self.info, self.device = model.to(device), train_cfg, info, device
        self.autocast = autocast_context(device, select_amp(train_cfg.trainer.amp, device))
        self.inference = dict(inference or {})
        self.crf = crf if crf is not None and crf.name != "none" else None
        dataset = train_cfg.dataset
        self.exif = dataset.get("exif_orientation", "apply") == "apply"  # labels for the picture as shown
        scaling = dataset.get("intensity_range", "auto")
        self.intensity_range = scaling if isinstance(scaling, str) else tuple(scaling)
        self.resize = None
        if dataset.get("scale") is not None or dataset.get("short_side") is not None:
            self.resize = (dataset.get("scale"), dataset.get("short_side"))

    @classmethod
    def from_checkpoint(cls, path, device="auto", inference=None, crf=None, overrides=()) -> "Segmenter":
        """The model of the segtrain checkpoint at `path` (best.pt or last.pt of any run), on `device`: "auto" (a
        GPU when there is one, else the CPU), "cpu", "cuda", "cuda:N", a torch.device, or None (the checkpoint's
        trainer.device). trainer.amp of the checkpoint applies where the device can run it, as in segtrain-predict.

        inference: None (one pass over the whole image, what training validated with), the name of a
            configs/inference option ("slide", "multiscale") or a dict of its keys ({"mode": "slide", "tile":
            256}, {"scales": [0.75, 1.0, 1.25], "flip": True});
        crf: None (no CRF), the name of a configs/crf option ("dense", "deeplab_resnet", ...) or a dict of its keys
            ({"name": "dense", "w1": 5}); predict and predict_batch refine the probabilities with it (the CRF gives
            labels: predict_proba stays the network's). It runs in the calling process unless the dict sets
            "workers" (CPU processes for predict_batch, as segtrain-predict's crf.workers; they are spawned, so
            a script using them needs the `if __name__ == "__main__":` guard);
        overrides: KEY=VALUE strings over the checkpoint's stored training config, as on segtrain-predict's
            command line (["dataset.exif_orientation=ignore"] for a checkpoint trained with dataset=folder; each key
            must be one the checkpoint's dataset has).
        Both are checked by the schemas segtrain-predict's command line is checked by. Errors: SegtrainError, one
        line naming the file or key (a missing or foreign checkpoint, an unknown option or key, a value out of its
        range, no CUDA device for device="cuda")."""
        from collections.abc import Mapping

        import torch

        from .checkpoint import restore
        from .config import app_option, to_plain
        from .data import checkpoint_dataset_info
        from .runtime import select_device

        inference_cfg, crf_cfg = app_option("inference", inference), app_option("crf", crf)
        if crf_cfg.name == "dense" and not (isinstance(crf, Mapping) and "workers" in crf):
            crf_cfg.workers = 0  # worker processes are spawned: they would rerun a script without a __main__ guard
        train_cfg, model, state = restore(path, list(overrides))
        if device is None:
            device = select_device(train_cfg.trainer.device)
        else:
            try:
                device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" \
                    else torch.device(device)
            except (RuntimeError, TypeError):
                raise SegtrainError(f"device={device!r}: expected auto, cpu, cuda or cuda:N") from None
            if device.type == "cuda" and not torch.cuda.is_available():
                raise SegtrainError(f"device={str(device)!r}: no CUDA device is available; use device='auto' or 'cpu'")
        return cls(model, train_cfg, checkpoint_dataset_info(state, train_cfg), device, to_plain(inference_cfg),
                   crf_cfg, name=f"checkpoint {path}")

    @property
    def class_names(self) -> list:
        """The class names (str), index = label value."""
        return list(self.info["class_names"])

    @property
    def palette(self) -> np.ndarray:
        """(N, 3) uint8 RGB: row i is the colour of label value i (the classes, then up to 255, void, for a full
        PNG palette), as segtrain-predict paints its label PNGs and overlays."""
        return np.asarray(self.info["palette"], np.uint8)

    @property
    def input_channels(self) -> int:
        """3 for an RGB model, 1 for a grey one."""
        return self.info["input_channels"][0]

    def read(self, image) -> Picture:
        """`image` (a path, PIL image or numpy array: see the class) read as the model's training data were; a
        Picture read before is given back as it is."""
        from PIL import Image

        if isinstance(image, Picture):
            return image
        grey = self.input_channels == 1
        if isinstance(image, (str, os.PathLike, Image.Image)):
            return read_input(image, grey, self.info, self.exif, self.intensity_range)
        if isinstance(image, np.ndarray):
            return self._read_array(image, grey)
        raise SegtrainError(f"an image of type {type(image).__name__}: expected a path, a PIL image or a numpy array "
                            "(H, W[, 3]) (a torch tensor: tensor.numpy(), with the meaning of its dtype)")

    def _read_array(self, array: np.ndarray, grey: bool) -> Picture:
        from PIL import Image

        from .data.files import to_depth

        shape = array.shape
        if array.ndim == 3 and shape[2] == 1:
            array = array[..., 0]
        if array.ndim not in (2, 3) or array.ndim == 3 and shape[2] != 3 or 0 in shape:
            hint = "; RGBA? pass array[..., :3]" if array.ndim == 3 and shape[2] == 4 else ""
            raise SegtrainError(f"an array of shape {shape}: expected (H, W) grey or (H, W, 3) RGB{hint}")
        if array.dtype == np.uint8 or array.dtype == np.uint16 and array.ndim == 2:
            return read_input(Image.fromarray(array), grey, self.info, False, self.intensity_range, "the array")
        if array.dtype.kind not in "uf" or array.dtype.kind == "u" and array.dtype != np.uint16:
            raise SegtrainError(f"an array of dtype {array.dtype}: expected uint8, uint16 or float (fractions of full "
                                "intensity, 0..1); values read from a file: pass the file's path or its PIL image, "
                                "which are read at their own depth")
        if grey and array.ndim == 3:
            raise SegtrainError(f"an array of shape {shape} and dtype {array.dtype}: this grey model takes an (H, W) "
                                "array at this depth (colour converts to grey only from uint8)")
        if array.dtype.kind == "f":
            if not np.isfinite(array).all():
                raise SegtrainError("a float array with NaN or infinite values: expected fractions of full "
                                    "intensity, 0..1")
            low, high = float(array.min()), float(array.max())
            if self.intensity_range == "auto" and (low < 0 or high > 1):
                raise SegtrainError(f"a float array with values {low:g}..{high:g}: floats are fractions of full "
                                    "intensity, 0..1 (array / 255 for 8-bit values, or pass array.astype(np.uint8))")
            if grey and self.intensity_range == "auto":  # v x full intensity, not rounded to the stored depth
                scale = float((self.info.get("scale") or [255.0])[0])
                shown = to_depth(array, "auto", "the array", warn=False)
                return Picture(np.repeat(shown[..., None], 3, axis=2),
                               (array.astype(np.float64) * scale).astype(np.float32)[..., None], (scale,))
            if grey:  # [LO, HI] or percentile: as a float file is read
                return read_input(Image.fromarray(array.astype(np.float32)), grey, self.info, False,
                                  self.intensity_range, "the array")
        rgb = to_depth(array, self.intensity_range, "the array")  # as read_image scales 16-bit and float files
        rgb = rgb if rgb.ndim == 3 else np.repeat(rgb[..., None], 3, axis=2)
        return Picture(rgb, rgb, (255.0,) * 3)

    def scored(self, pictures, batch_size: int = 1, probabilities: bool = False):
        """(picture, scores (C, H, W) float32 on the device at the picture's size, extra) for each (Picture,
        extra) of the iterable `pictures`, lazily, in order: class probabilities, or for one whole-image pass
        without `probabilities` the logits (whose argmax is the same; training validates with them). Up to
        `batch_size` consecutive pictures whose network inputs have one size go through one forward pass; inputs
        of different sizes are never padded together, which would change the scores near their borders."""
        import torch
        import torch.nn.functional as F

        from .data.files import Normalize
        from .inference import predict_scores

        def score(window):
            inputs = [network_input(picture.pixels, Normalize(self.info["mean"], self.info["std"], picture.scale),
                                    self.resize) for picture, _ in window]
            groups = {}
            for i, tensor in enumerate(inputs):
                groups.setdefault(tuple(tensor.shape), []).append(i)
            scores = [None] * len(window)
            for members in groups.values():
                with torch.no_grad(), self.autocast:
                    batch = predict_scores(self.model, torch.stack([inputs[i] for i in members]).to(self.device),
                                           **self.inference, probabilities=probabilities)
                for i, item in zip(members, batch):
                    size = window[i][0].rgb.shape[:2]
                    if item.shape[-2:] != size:
                        item = F.interpolate(item[None].float(), size=size, mode="bilinear", align_corners=False)[0]
                    scores[i] = item.float()
            return [(picture, item, extra) for (picture, extra), item in zip(window, scores)]

        window = []
        for entry in pictures:
            window.append(entry)
            if len(window) == batch_size:
                yield from score(window)
                window = []
        if window:
            yield from score(window)

    def labelled(self, pictures, batch_size: int = 1, workers=None):
        """(labels (H, W) uint8, picture, extra) for each (Picture, extra) of the iterable `pictures`, lazily, in
        order: the argmax of scored()'s scores, or the dense CRF's labels on the probabilities when the Segmenter
        has a CRF (run in `workers` CPU processes, default its crf.workers, 0: in this process). Close the
        generator (contextlib.closing) to end the CRF's workers at once when stopping early."""
        if self.crf is None:
            for picture, scores, extra in self.scored(pictures, batch_size):
                yield scores.argmax(0).cpu().numpy().astype(np.uint8), picture, extra
            return
        from .crf import crf_params, crf_refiner

        workers = self.crf.workers if workers is None else workers
        if self.device.type == "cuda" and self.crf.backend == "torch":
            workers = 0  # refined on the GPU, where the probabilities are: no CPU processes to start
        with crf_refiner(crf_params(self.crf), self.crf.backend, workers, self.crf.batch_images) as refine:
            jobs = ((picture.rgb, probs, (picture, extra))
                    for picture, probs, extra in self.scored(pictures, batch_size, probabilities=True))
            for labels, (picture, extra) in refine(jobs):
                yield labels, picture, extra

    def predict(self, image) -> np.ndarray:
        """(H, W) uint8 class indices (index into class_names) for `image` at its own size (as shown: after its
        EXIF orientation): the argmax of the network's scores under the Segmenter's inference setting, or the
        dense CRF's labels when it has one. Errors: SegtrainError for an image that cannot be read (see the
        class)."""
        return next(self.labelled([(self.read(image), None)], workers=0))[0]

    def predict_proba(self, image) -> np.ndarray:
        """(C, H, W) float32 class probabilities (softmax, summing to 1 over C) for `image` at its own size: the
        network's, averaged over scales, flips or tiles as the inference setting says, upsampled bilinearly where
        the network scored a resized image. The CRF gives labels, not probabilities: it does not apply here.
        Errors: SegtrainError for an image that cannot be read (see the class)."""
        return next(self.scored([(self.read(image), None)], probabilities=True))[1].cpu().numpy()

    def predict_batch(self, images, batch_size=None) -> list:
        """[(H_i, W_i) uint8 labels] for a list of images, each as predict() gives it. Up to `batch_size`
        consecutive images of one network input size share a forward pass on the device (default: 8 on a GPU; 1
        on the CPU, where larger batches run slower, docs/benchmarks.md); sizes are never padded together. On the
        CPU the CRF runs in the Segmenter's crf.workers processes (from_checkpoint: 0, this one, unless set;
        started for each call).
        Errors: SegtrainError for `images` that is one image rather than a list of them (a path, PIL image or
        array: its characters or rows would be read as images), and for the first image that cannot be read,
        naming its index and what it is."""
        from contextlib import closing

        from PIL import Image

        if isinstance(images, (str, bytes, os.PathLike, np.ndarray, Image.Image)) or not hasattr(images, "__iter__"):
            raise SegtrainError(f"predict_batch: expected a list of images, got one {type(images).__name__}; for one "
                                "image use predict(image), or pass [image]")

        batch_size = (8 if self.device.type == "cuda" else 1) if batch_size is None else batch_size
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise SegtrainError(f"batch_size={batch_size!r}: expected a whole number >= 1")
        def pictures():
            for index, image in enumerate(images):
                try:
                    yield self.read(image), None
                except SegtrainError as error:
                    raise SegtrainError(f"images[{index}]: {error}") from None

        with closing(self.labelled(pictures(), batch_size)) as labelled:
            return [labels for labels, _, _ in labelled]

    def overlay(self, image, labels, alpha: float = 0.5, skip_classes=None):
        """A PIL RGB image: `image` (read as predict reads it) with each class of `labels` ((H, W) class indices,
        the image's size) painted in the palette's colour at opacity `alpha`, and below it a legend of the classes
        drawn, as segtrain-predict's NAME_overlay.png. `skip_classes` (names or indices) are left unpainted; None:
        the class named "background", if any. Labels outside the classes (255, void) stay unpainted. Errors:
        SegtrainError for labels of another size or not of an integer dtype, or a bad alpha or class."""
        import torch

        from .visualize import overlay_with_legend

        if isinstance(skip_classes, (str, int)):  # one class: not the characters of its name
            skip_classes = [skip_classes]
        alpha, skip = overlay_options(alpha, skip_classes, self.class_names)
        rgb, labels = self.read(image).rgb, np.asarray(labels)
        if labels.dtype.kind not in "ui":
            raise SegtrainError(f"labels of dtype {labels.dtype}: expected integer class indices, as predict gives")
        if labels.shape != rgb.shape[:2]:
            raise SegtrainError(f"labels of shape {labels.shape} for an image of {rgb.shape[1]}x{rgb.shape[0]} "
                                "(width x height): expected (height, width)")
        return overlay_with_legend(torch.from_numpy(rgb).permute(2, 0, 1), torch.from_numpy(labels.astype(np.int64)),
                                   torch.from_numpy(self.palette), self.class_names, alpha, skip)
