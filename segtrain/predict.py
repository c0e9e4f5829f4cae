"""Prediction on new images with a checkpoint, as segtrain-predict's config says (configs/predict.yaml):
predict_images(cfg) reads each image as the training data were read, scores it (whole, slide, multiscale) and
refines it with the dense CRF through segtrain.Segmenter, as Python callers do, then writes NAME.png (the label map
as a palette PNG) and NAME_overlay.png; regions of interest (roi=) make the pixels outside them void."""
import sys
from pathlib import Path

from .config import app_overrides, check_config
from .errors import SegtrainError
from .outputs import Manifest
from .processes import Interrupted
from .segmenter import Segmenter, overlay_options


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
                                f"(width x height); roi={roi} gives it")
        regions[path] = region
    return regions


def predict_images(cfg) -> int:
    """Label every image of cfg.input into cfg.output; the exit status (1 when an image was skipped)."""
    from contextlib import closing

    import numpy as np
    from PIL import Image

    from .config import to_plain
    from .data.folder import read_region
    from .data.labels import IGNORE_INDEX
    from .progress import track

    check_config(cfg)
    files = input_files(cfg.input)
    segmenter = Segmenter.from_checkpoint(cfg.ckpt, device=None, inference=to_plain(cfg.inference),
                                          crf=to_plain(cfg.crf), overrides=app_overrides(cfg))
    regions = region_files(cfg.roi, cfg.roi_suffix, files, segmenter.train_cfg.dataset, segmenter.exif)
    prepare_output(Path(cfg.output), Path(cfg.input), files)
    overlay_options(cfg.alpha, cfg.skip_classes, segmenter.class_names)  # before any work
    output = Path(cfg.output)
    skipped = []

    def pictures():
        """(picture, file) for each readable image, read as the training data were."""
        for path in track(files, len(files), "predicting", unit="image"):
            try:
                yield segmenter.read(path), path
            except SegtrainError as error:
                print(f"segtrain-predict: skipped {error}", file=sys.stderr)
                skipped.append(path)

    written, writing = 0, []
    try:
        with closing(segmenter.labelled(pictures())) as labelled:
            for labels, picture, path in labelled:
                writing = [output / f"{path.stem}.png", output / f"{path.stem}_overlay.png"]
                if path in regions:  # outside the region of interest: void, and not painted over
                    labels = np.where(read_region(regions[path], labels.shape, path.name), labels, IGNORE_INDEX)
                label_png = Image.fromarray(labels.astype(np.uint8))
                label_png.putpalette(segmenter.palette.flatten().tolist())
                label_png.save(output / f"{path.stem}.png")
                overlay = segmenter.overlay(picture, labels, cfg.alpha, cfg.skip_classes)
                overlay.save(output / f"{path.stem}_overlay.png")
                written, writing = written + 1, []
    except Interrupted as stop:
        for partial in writing:  # stopped while writing this image's files: none of them half written
            partial.unlink(missing_ok=True)
        stop.outcome = f"{written} of {len(files)} images were labelled in {output} (kept)"
        raise
    print(f"wrote {written} label map{'s' * (written != 1)} (NAME.png) and overlay{'s' * (written != 1)} "
          f"(NAME_overlay.png) to {output}"
          + (f", {IGNORE_INDEX} outside the regions of interest" if regions else "")
          + (f"; skipped {len(skipped)} unreadable image(s)" if skipped else ""))
    return 1 if skipped else 0
