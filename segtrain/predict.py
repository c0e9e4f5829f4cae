"""Prediction on new images with a checkpoint, as segtrain-predict's config says (configs/predict.yaml):
predict_images(cfg) reads each image as the training data were read, scores it (whole, slide, multiscale), refines
it with the dense CRF, and writes NAME.png (the label map as a palette PNG) and NAME_overlay.png; regions of
interest (roi=) make the pixels outside them void."""
import sys
from pathlib import Path

from .config import app_overrides, check_config
from .errors import SegtrainError
from .outputs import Manifest
from .processes import Interrupted


def input_files(path: str):
    from .data.files import IMAGE_SUFFIXES

    source = Path(path)
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise SegtrainError(f"input={path}: the folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return files
    if source.is_file():
        return [source]
    raise SegtrainError(f"input={path}: no such file or folder")


MANIFEST = ".segtrain-predict.json"  # the files segtrain-predict wrote into an output folder


def prepare_output(output: Path, source: Path, files) -> None:
    """Before any work: the output folder is not the input folder, is writable, and no output would replace an
    input or a file segtrain-predict did not write there (its manifest lists what it wrote)."""
    from collections import Counter

    folder = source if source.is_dir() else source.parent
    if output.resolve() == folder.resolve():
        raise SegtrainError(f"output={output} is the input folder; its images would be overwritten: choose another")
    stems = Counter(path.stem for path in files)
    colliding = sorted(stem for stem, count in stems.items() if count > 1)
    if colliding:
        raise SegtrainError(f"input={source}: images share the names {', '.join(colliding[:5])} (e.g. a.jpg and "
                            "a.png) and would write the same output files; predict them into separate folders")
    try:
        output.mkdir(parents=True, exist_ok=True)
        manifest = Manifest(output, MANIFEST)
        ours = {name for path in files for name in (f"{path.stem}.png", f"{path.stem}_overlay.png")}
        foreign = manifest.foreign(ours)
        if foreign:
            raise SegtrainError(f"output={output} already holds {', '.join(foreign[:5])}, which segtrain-predict did "
                                "not write; choose an empty or new folder")
        manifest.record(ours)
    except OSError as e:
        raise SegtrainError(f"output={output}: cannot write there ({e.strerror})") from None


def region_files(roi, roi_suffix, files, dataset_cfg, exif: bool):
    """{image: region-of-interest file} for roi= (a folder, paired by name as training paired its regions, or one
    file for every image), each checked to exist and to be the image's size; {} without roi=."""
    from .data.files import image_header
    from .data.folder import region_file

    if roi is None:
        return {}
    source = Path(roi)
    if not source.exists():
        raise SegtrainError(f"roi={roi}: no such file or folder")
    image_suffix = dataset_cfg.get("image_suffix")
    image_suffix = image_suffix if image_suffix and "{split}" not in image_suffix else None
    suffix = roi_suffix if roi_suffix is not None else dataset_cfg.get("roi_suffix") or ".png"
    if source.is_dir() and "{split}" in suffix:
        raise SegtrainError(f"roi_suffix={suffix} (the checkpoint's dataset.roi_suffix) names regions per split; give "
                            "roi_suffix= (what follows an image's name in its region file's: roi_suffix=_mask.gif)")
    regions = {}
    for path in files:
        region = source if source.is_file() else region_file(
            source, path, image_suffix, suffix, f"roi_suffix={suffix} names it (NAME{suffix} for NAME{path.suffix})")
        try:
            height, width = image_header(path, exif)[0]
        except SegtrainError:  # an unreadable image is skipped when its turn comes, as without roi=
            height = width = None
        rh, rw = image_header(region, False)[0]
        if height is not None and (height, width) != (rh, rw):
            raise SegtrainError(f"{region}: region of interest is {rw}x{rh} but {path.name} is {width}x{height} "
                                "(width x height)")
        regions[path] = region
    return regions


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


def read_input(path, grey: bool, info: dict, exif: bool, intensity_range):
    """(rgb (H, W, 3) uint8 to draw on, the network's pixels (H, W, C) as stored, their full-intensity scale per
    channel), read as the model's training data were: RGB, or one grey channel for a grey model (a colour file's
    luminance; 16-bit files at their stored depth)."""
    import numpy as np

    from .data.files import read_image, to_8bit

    if not grey:
        rgb = read_image(path, exif=exif, intensity_range=intensity_range)
        return rgb, rgb, tuple(info.get("scale") or (255.0,) * 3)
    raw = read_image(path, mode=None, exif=exif)
    if raw.ndim == 3:
        raw = read_image(path, mode="L", exif=exif)
    # checkpoints before the scale was stored: as the folder dataset decides it, by the file's depth
    scale = float((info.get("scale") or [65535.0 if raw.dtype == np.uint16 else 255.0])[0])
    shown = to_8bit(raw, (0, scale), path) if raw.dtype != np.uint8 or scale != 255 else raw
    return np.repeat(shown[..., None], 3, axis=2), raw[..., None], (scale,)


def predict_images(cfg) -> int:
    """Label every image of cfg.input into cfg.output; the exit status (1 when an image was skipped)."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from PIL import Image

    from .checkpoint import restore
    from .config import to_plain
    from .crf import crf_params, crf_refiner
    from .data import checkpoint_dataset_info
    from .data.files import Normalize
    from .data.labels import IGNORE_INDEX
    from .data.folder import read_region
    from .engine import autocast_context
    from .inference import predict_scores
    from .progress import track
    from .runtime import select_amp, select_device
    from .visualize import overlay_with_legend

    check_config(cfg)
    files = input_files(cfg.input)
    train_cfg, model, state = restore(cfg.ckpt, app_overrides(cfg))
    exif = train_cfg.dataset.get("exif_orientation", "apply") == "apply"  # labels for the picture as shown
    regions = region_files(cfg.roi, cfg.roi_suffix, files, train_cfg.dataset, exif)
    prepare_output(Path(cfg.output), Path(cfg.input), files)
    info = checkpoint_dataset_info(state, train_cfg)
    if info["input_channels"] not in ([3], [1]):
        raise SegtrainError(f"ckpt={cfg.ckpt}: the model takes {info['input_channels']} input streams "
                            f"({train_cfg.dataset.name} with dataset.modality={train_cfg.dataset.get('modality')}); "
                            "segtrain-predict reads one RGB or grey image per input: evaluate it with segtrain-eval")
    device = select_device(train_cfg.trainer.device)
    autocast = autocast_context(device, select_amp(train_cfg.trainer.amp, device))
    model.to(device)
    grey = info["input_channels"] == [1]
    palette = torch.tensor(info["palette"], dtype=torch.uint8)
    class_names = list(info["class_names"])
    alpha, skip = overlay_options(cfg.alpha, cfg.skip_classes, class_names)
    use_crf = cfg.crf.name != "none"
    resize = None
    if train_cfg.dataset.get("scale") is not None or train_cfg.dataset.get("short_side") is not None:
        resize = (train_cfg.dataset.get("scale"), train_cfg.dataset.get("short_side"))
    inference = to_plain(cfg.inference)
    scaling = train_cfg.dataset.get("intensity_range", "auto")
    scaling = scaling if isinstance(scaling, str) else tuple(scaling)
    output = Path(cfg.output)
    skipped = []

    def scored():
        """(rgb (H, W, 3) uint8, class probabilities or scores (C, H, W), file) for each readable image."""
        for path in track(files, len(files), "predicting", unit="image"):
            try:
                rgb, pixels, scale = read_input(path, grey, info, exif, scaling)  # as the training data were read
            except SegtrainError as error:
                print(f"segtrain-predict: skipped {error}", file=sys.stderr)
                skipped.append(path)
                continue
            image = network_input(pixels, Normalize(info["mean"], info["std"], scale), resize)[None]
            with torch.no_grad(), autocast:
                scores = predict_scores(model, image.to(device), **inference, probabilities=use_crf)
            if scores.shape[-2:] != rgb.shape[:2]:
                scores = F.interpolate(scores.float(), size=rgb.shape[:2], mode="bilinear", align_corners=False)
            yield rgb, scores[0].float(), path

    params = crf_params(cfg.crf)
    written, writing = 0, []
    try:
        with crf_refiner(params, cfg.crf.backend, cfg.crf.workers if use_crf else 0, cfg.crf.batch_images) as refine:
            if use_crf:
                labelled = refine((rgb, probs, (rgb, path)) for rgb, probs, path in scored())
            else:
                labelled = ((scores.argmax(0).cpu().numpy(), (rgb, path)) for rgb, scores, path in scored())
            for labels, (rgb, path) in labelled:
                writing = [output / f"{path.stem}.png", output / f"{path.stem}_overlay.png"]
                if path in regions:  # outside the region of interest: void, and not painted over
                    labels = np.where(read_region(regions[path], labels.shape, path.name), labels, IGNORE_INDEX)
                label_png = Image.fromarray(labels.astype(np.uint8))
                label_png.putpalette(palette.flatten().tolist())
                label_png.save(output / f"{path.stem}.png")
                overlay_with_legend(torch.from_numpy(rgb).permute(2, 0, 1),
                                    torch.from_numpy(labels.astype(np.int64)), palette, class_names, alpha,
                                    skip).save(output / f"{path.stem}_overlay.png")
                written, writing = written + 1, []
    except Interrupted as stop:
        for partial in writing:  # stopped while writing this image's files: none of them half written
            partial.unlink(missing_ok=True)
        stop.outcome = f"{written} of {len(files)} images were labelled in {output} (kept)"
        raise
    print(f"wrote {written} label maps (NAME.png) and overlays (NAME_overlay.png) to {output}"
          + (f", {IGNORE_INDEX} outside the regions of interest" if regions else "")
          + (f"; skipped {len(skipped)} unreadable image(s)" if skipped else ""))
    return 1 if skipped else 0
