"""CRF refinement, test-time scoring modes and the evaluation CLI's handling of them."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from segtrain.cli.evaluate import run as run_eval
from segtrain.crf import crf_refiner, dense_crf
from segtrain.errors import SegtrainError
from segtrain.inference import predict_scores

PARAMS = dict(w1=4.0, sigma_alpha=49.0, sigma_beta=5.0, w2=3.0, sigma_gamma=3.0, iterations=10)


def two_region_problem(seed=0, size=40):
    """An image of two flat colours and class probabilities that are right only 65% of the time per pixel."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((size, size), np.uint8)
    truth[:, size // 2:] = 1
    image = np.where(truth[..., None] == 1, [200, 30, 30], [30, 30, 200]).astype(np.uint8)
    noisy_right = rng.random((size, size)) < 0.65
    guess = np.where(noisy_right, truth, 1 - truth)
    probs = np.stack([np.where(guess == 0, 0.6, 0.4), np.where(guess == 1, 0.6, 0.4)]).astype(np.float32)
    return image, probs, truth


def test_dense_crf_cleans_up_noisy_probabilities_along_image_edges():
    image, probs, truth = two_region_problem()
    before = (probs.argmax(0) == truth).mean()
    after = (dense_crf(image, probs, **PARAMS) == truth).mean()
    assert before < 0.7 and after > 0.97


def test_parallel_crf_workers_give_the_in_process_results_in_order():
    jobs = [two_region_problem(seed)[:2] + (seed,) for seed in range(5)]
    with crf_refiner(PARAMS, "pydensecrf", 0) as refine:
        serial = list(refine(iter(jobs)))
    with crf_refiner(PARAMS, "pydensecrf", 2) as refine:
        parallel = list(refine(iter(jobs)))
    assert [extra for _, extra in parallel] == list(range(5))
    assert all(np.array_equal(a, b) for (a, _), (b, _) in zip(serial, parallel))


def pointwise_model():
    """A 1x1-conv net: no context, so tiles, flips and whole images must all give the same probabilities."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 1), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 1)).eval()


def test_sliding_window_and_flip_match_a_whole_pass_for_a_pointwise_net():
    model, images = pointwise_model(), torch.randn(2, 3, 45, 70)
    with torch.no_grad():
        whole = model(images).softmax(1)
        assert torch.equal(predict_scores(model, images), model(images))  # logits: training's metrics exactly
        torch.testing.assert_close(predict_scores(model, images, probabilities=True), whole)
        torch.testing.assert_close(predict_scores(model, images, mode="slide", tile=16, overlap=0.5), whole)
        torch.testing.assert_close(predict_scores(model, images, flip=True), whole)
        multi = predict_scores(model, images, scales=[0.5, 1.0, 2.0])
    assert multi.shape == whole.shape and torch.allclose(multi.sum(1), torch.ones(2, 45, 70))


def test_sliding_window_covers_every_pixel_and_averages_overlaps():
    calls = []

    class Counter(torch.nn.Module):
        def forward(self, x):
            calls.append(tuple(x.shape[-2:]))
            return torch.zeros(x.shape[0], 2, *x.shape[-2:])

    probs = predict_scores(Counter(), torch.zeros(1, 3, 50, 30), mode="slide", tile=20, overlap=0.5)
    assert torch.allclose(probs, torch.full_like(probs, 0.5))  # every pixel scored, overlaps averaged
    assert calls == [(20, 20)] * 8  # rows 0,10,20,30 x cols 0,10: on a CPU one window per forward pass
    calls.clear()
    predict_scores(Counter(), torch.zeros(1, 3, 50, 30), mode="slide", tile=20, overlap=0.5, per_forward=16)
    assert calls == [(20, 20)]  # all eight in one (a GPU's default)


def test_batched_windows_and_flips_equal_one_forward_each():
    """A net that is not pointwise (3x3 conv, BN in eval mode): scoring windows and mirrored copies several to a
    forward pass gives what scoring each alone gives."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                                torch.nn.Conv2d(8, 4, 3, padding=1)).eval()
    model[1].running_mean.uniform_(-1, 1)
    images, tile = torch.randn(3, 3, 45, 70), 20  # windows every 10 px
    with torch.no_grad():
        probs, counts = torch.zeros(3, 4, 45, 70), torch.zeros(45, 70)
        for top in [0, 10, 20, 25]:
            for left in [0, 10, 20, 30, 40, 50]:
                for i in range(3):  # one window of one image per forward
                    window = images[i:i + 1, :, top:top + tile, left:left + tile]
                    probs[i, :, top:top + tile, left:left + tile] += model(window).softmax(1)[0]
                counts[top:top + tile, left:left + tile] += 1
        torch.testing.assert_close(predict_scores(model, images, mode="slide", tile=tile, overlap=0.5,
                                                  per_forward=16), probs / counts)
        mirrored = torch.stack([model(im[None]).softmax(1)[0] + model(im[None].flip(-1)).softmax(1)[0].flip(-1)
                                for im in images]) / 2
        torch.testing.assert_close(predict_scores(model, images, flip=True, per_forward=16), mirrored)
        torch.testing.assert_close(predict_scores(model, images, flip=True, per_forward=1), mirrored)


@pytest.mark.slow
def test_eval_with_crf_reports_both_and_keeps_the_plain_metrics(finished_run, tmp_path, capsys):
    run_dir, _ = finished_run
    ckpt = run_dir / "checkpoints" / "last.pt"
    plain = run_eval([f"ckpt={ckpt}"])
    result = run_eval([f"ckpt={ckpt}", "crf=deconvnet", "crf.workers=0", f"hydra.run.dir={tmp_path / 'crf'}"])
    out = capsys.readouterr().out
    assert "+CRF" in out
    assert {k: result[k] for k in ("pixel_acc", "mean_iu")} == {k: plain[k] for k in ("pixel_acc", "mean_iu")}
    stored = json.loads((tmp_path / "crf" / "metrics.json").read_text())
    assert sorted(p.name for p in (tmp_path / "crf").iterdir()) == [
        "config.yaml", "confusion.csv", "confusion.png", "metrics.json", "metrics.md"]
    assert "+CRF IU" in (tmp_path / "crf" / "metrics.md").read_text()
    assert stored["crf"]["params"]["w1"] == 5.0 and stored["crf"]["params"]["sigma_alpha"] == 20.0
    assert 0 <= stored["crf"]["mean_iu"] <= 1 and set(stored["crf"]["iu"]) == set(result["iu"])
    reference = run_eval([f"ckpt={ckpt}", "crf=deconvnet", "crf.workers=0", "crf.backend=pydensecrf"])
    assert abs(reference["crf"]["mean_iu"] - stored["crf"]["mean_iu"]) <= 0.001  # the torch backend's, within 0.1
    multiscale = run_eval([f"ckpt={ckpt}", "inference=multiscale", "inference.scales=[1.0,1.5]"])
    assert 0 <= multiscale["mean_iu"] <= 1
    with pytest.raises(SegtrainError, match="crf"):
        run_eval([f"ckpt={ckpt}", "crf=bogus"])


def test_predict_writes_palette_label_maps_and_overlays_and_skips_unreadable_images(finished_run, tmp_path, capsys):
    from PIL import Image

    from segtrain.cli.predict import run as run_predict

    run_dir, _ = finished_run
    ckpt = run_dir / "checkpoints" / "last.pt"
    images = tmp_path / "in"
    images.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (37, 53, 3), dtype=np.uint8)).save(images / "wide.jpg")
    Image.fromarray(rng.integers(0, 255, (70, 20, 3), dtype=np.uint8)).save(images / "tall.png")
    (images / "broken.jpg").write_bytes(b"not an image")
    status = run_predict([f"ckpt={ckpt}", f"input={images}", f"output={tmp_path / 'out'}"])
    captured = capsys.readouterr()
    assert status == 1 and "broken.jpg: cannot read the image" in captured.err and "skipped 1" in captured.out
    for name, size in (("wide", (53, 37)), ("tall", (20, 70))):
        labels = Image.open(tmp_path / "out" / f"{name}.png")
        assert labels.mode == "P" and labels.size == size and np.array(labels).max() < 5
        assert Image.open(tmp_path / "out" / f"{name}_overlay.png").size == size
    assert not (tmp_path / "out" / "broken.png").exists()

    # the same labels as the model's argmax on the normalised image
    from segtrain.checkpoint import load_checkpoint
    from segtrain.config import stored_config
    from segtrain.models import build_model_from_config

    state = load_checkpoint(ckpt)
    model = build_model_from_config(stored_config(state["config"], version=state["config_version"]), 5)
    model.load_state_dict(state["model"])
    rgb = torch.from_numpy(np.array(Image.open(images / "tall.png"))).permute(2, 0, 1).float() / 255
    x = (rgb - torch.tensor(state["data"]["mean"])[:, None, None]) / torch.tensor(state["data"]["std"])[:, None, None]
    with torch.no_grad():
        expected = model.eval()(x[None]).argmax(1)[0].numpy()
    assert np.array_equal(np.array(Image.open(tmp_path / "out" / "tall.png")), expected)

    assert run_predict([f"ckpt={ckpt}", f"input={images / 'wide.jpg'}", f"output={tmp_path / 'crf'}", "crf=dense",
                        "crf.workers=0"]) == 0
    assert Image.open(tmp_path / "crf" / "wide.png").size == (53, 37)
    with pytest.raises(SegtrainError, match="no such file or folder"):
        run_predict([f"ckpt={ckpt}", f"input={tmp_path / 'nowhere'}", f"output={tmp_path / 'x'}"])


@pytest.mark.slow
def test_export_onnx_with_dynamic_height_and_width_matches_pytorch(finished_run, tmp_path):
    import onnxruntime

    from segtrain.checkpoint import load_checkpoint
    from segtrain.config import stored_config
    from segtrain.cli.export import run as run_export
    from segtrain.models import build_model_from_config

    run_dir, _ = finished_run
    ckpt = run_dir / "checkpoints" / "last.pt"
    path = run_export([f"ckpt={ckpt}", f"out={tmp_path / 'model.onnx'}", "height=64", "width=48"])
    state = load_checkpoint(ckpt)
    model = build_model_from_config(stored_config(state["config"], version=state["config_version"]), 5).eval()
    model.load_state_dict(state["model"])
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 3, 81, 29)  # a batch and size the export never saw
    with torch.no_grad():
        np.testing.assert_allclose(session.run(None, {"image": x.numpy()})[0], model(x).numpy(), rtol=1e-3,
                                   atol=1e-4)
    with pytest.raises(SegtrainError, match="format=tflite"):
        run_export([f"ckpt={ckpt}", "format=tflite"])


def test_overlay_paints_the_classes_present_but_skipped_ones_and_adds_a_legend():
    from segtrain.data.palette import voc_palette
    from segtrain.visualize import overlay_with_legend

    rgb = torch.full((3, 20, 30), 100, dtype=torch.uint8)
    labels = torch.zeros(20, 30, dtype=torch.long)
    labels[:, 10:20], labels[:, 20:] = 1, 2
    palette = voc_palette()
    image = overlay_with_legend(rgb, labels, palette, ["background", "road", "car", "sky"], alpha=1.0, skip={0})
    pixels = torch.from_numpy(np.asarray(image)).permute(2, 0, 1)
    assert (pixels[:, :20, :10] == 100).all()  # background skipped: the image as it was
    assert (pixels[:, :20, 10:20] == palette[1][:, None, None]).all()  # alpha 1: the class colour itself
    assert (pixels[:, :20, 20:30] == palette[2][:, None, None]).all()
    # the legend below: one swatch per painted class (road, car; not background, not the absent sky)
    assert image.height == 20 + 2 * 16 + 6  # 120-px columns: one entry per line on a 30-px image
    assert tuple(pixels[:, 20 + 4 + 6, 4 + 6].tolist()) == tuple(palette[1].tolist())
    assert tuple(pixels[:, 20 + 4 + 16 + 6, 4 + 6].tolist()) == tuple(palette[2].tolist())


def test_panels_take_evenly_spaced_items_fixed_across_validations():
    from segtrain.data import item_name
    from segtrain.visualize import evenly_spaced

    assert evenly_spaced(4, 100) == [0, 33, 66, 99] and evenly_spaced(4, 2) == [0, 1] and evenly_spaced(0, 9) == []

    class Named(torch.utils.data.Dataset):
        items = [(Path(f"/data/frame{i:03d}.jpg"), None) for i in range(10)]

    assert [item_name(Named(), i) for i in evenly_spaced(3, 10)] == ["frame000.jpg", "frame004.jpg", "frame009.jpg"]


def test_predict_overlay_options(finished_run, tmp_path):
    from segtrain.segmenter import overlay_options

    names = ["background", "block", "disc"]
    assert overlay_options(0.5, None, names) == (0.5, {0})  # the background class is left unpainted by default
    assert overlay_options(0.5, [], names) == (0.5, set())
    assert overlay_options(0.8, ["disc", "1"], names) == (0.8, {1, 2})
    with pytest.raises(SegtrainError, match="skip_classes: 'car' is not a class"):
        overlay_options(0.5, ["car"], names)
    with pytest.raises(SegtrainError, match=r"alpha=2.0: expected a number in \[0, 1\]"):
        overlay_options(2.0, None, names)


def test_long_evaluation_shows_progress_off_a_terminal(caplog):
    from segtrain.progress import track

    caplog.set_level("INFO", logger="segtrain")
    assert list(track(range(5), 5, "evaluating", unit="batch", every_s=0.0)) == list(range(5))
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("evaluating: 1/5 batches") and "batch/s  eta 00:00:00" in lines[0]
    assert lines[-1].startswith("evaluating: 5 batches in")


@pytest.mark.slow
def test_reproduction_line_compares_only_evaluations_scored_as_training_validated(finished_run, capsys):
    from segtrain.evaluate import reproduction_line

    names = ("pixel_acc", "mean_acc", "mean_iu", "fw_iu")
    logged = dict(zip(names, (0.9, 0.5, 0.4, 0.8)))
    state = {"iteration": 6, "metrics_iteration": 6, "metrics": logged}
    whole = {"mode": "whole", "scales": [1.0], "flip": False}

    def line(metrics=logged, inference=whole, overrides=(), ensemble=(), crf=False):
        return reproduction_line(state, metrics, inference, list(overrides), list(ensemble), crf)

    head = "training logged at iteration 6: "
    assert line() == head + "identical"
    assert line(crf=True) == head + "identical (the network's metrics, before the CRF)"
    assert line(overrides=["trainer.val_batch_size=1"]) == head + "identical"
    assert line({**logged, "mean_iu": 0.41}, overrides=["trainer.device=cpu"]) == (
        head + "DIFFERENT (with trainer.device=cpu): pixel_acc 0.900000, mean_acc 0.500000, mean_iu 0.400000, "
        "fw_iu 0.800000")
    other = {**logged, "mean_iu": 0.5}  # what another scoring gives: never reported as DIFFERENT
    assert line(other, {**whole, "scales": [0.5, 1.0], "flip": True}) == head + "not comparable (inference=multiscale)"
    assert line(other, {**whole, "flip": True}) == head + "not comparable (inference=multiscale)"
    assert line(other, {**whole, "mode": "slide"}) == head + "not comparable (inference=slide)"
    assert line(other, overrides=["dataset.val_split=train", "trainer.device=cpu"]) == (
        head + "not comparable (dataset.val_split=train)")
    assert line(other, ensemble=["b.pt"]) == head + "not comparable (ensemble of 2 networks)"
    assert line(overrides=['dataset.root="/moved"']) == head + "identical"  # the same data, moved
    assert line(other, overrides=['dataset.root="/moved"', 'dataset.classes="/moved/c.yaml"']) == (
        head + 'DIFFERENT (with dataset.root="/moved" dataset.classes="/moved/c.yaml"): pixel_acc 0.900000, '
        "mean_acc 0.500000, mean_iu 0.400000, fw_iu 0.800000")
    assert reproduction_line({**state, "metrics_iteration": 4}, logged, whole, [], [], False) is None

    ckpt = finished_run[0] / "checkpoints" / "last.pt"  # as the command prints it
    run_eval([f"ckpt={ckpt}", "inference=multiscale", "inference.scales=[1.0,1.5]"])
    out = capsys.readouterr().out
    assert "training logged at iteration 6: not comparable (inference=multiscale)" in out and "DIFFERENT" not in out


def test_ensemble_of_checkpoints_trained_on_other_dataset_settings_is_one_line(finished_run, tmp_path):
    """Only the keys that change scoring are compared, after the command line's overrides."""
    from segtrain.checkpoint import load_checkpoint

    ckpt = finished_run[0] / "checkpoints" / "last.pt"
    other = load_checkpoint(ckpt)
    other["config"]["dataset"].update(image_size=48, num_val=8, val_split="train", num_train=3)
    other["config"]["trainer"].update(batch_size=3, val_batch_size=5, num_workers=1)
    torch.save(other, tmp_path / "other.pt")
    with pytest.raises(SegtrainError) as info:
        run_eval([f"ckpt={ckpt}", f"ensemble=[{tmp_path / 'other.pt'}]", f"hydra.run.dir={tmp_path / 'e'}"])
    assert str(info.value) == (
        f"ensemble={tmp_path / 'other.pt'}: trained on other dataset settings than ckpt={ckpt}: dataset.image_size "
        "48 against 32, dataset.num_val 8 against 4, dataset.val_split \"train\" against \"val\"; the members of an "
        "ensemble are scored together on one split, so they must share every dataset key that changes scoring (a "
        "command-line dataset.KEY= applies to every member)")
    assert not (tmp_path / "e").exists()  # refused before any work
    # the advice: the same values for both on the command line; num_train and the trainer's keys do not count
    run_eval([f"ckpt={ckpt}", f"ensemble=[{tmp_path / 'other.pt'}]", "dataset.image_size=48", "dataset.num_val=8",
              "dataset.val_split=train", f"hydra.run.dir={tmp_path / 'e'}"])
    assert json.loads((tmp_path / "e" / "metrics.json").read_text())["ensemble"] == [str(tmp_path / "other.pt")]


def test_a_failed_evaluation_leaves_no_half_made_folder(finished_run, tmp_path):
    import shutil

    shutil.copytree(finished_run[0] / "checkpoints", tmp_path / "run" / "checkpoints")
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    failed = subprocess.run([sys.executable, "-m", "segtrain.cli.evaluate", f"ckpt={ckpt}", "dataset.val_split=bogus"],
                            capture_output=True, text=True, timeout=120)
    assert failed.returncode == 2 and failed.stderr.strip().splitlines() == [
        "segtrain-eval: error: dataset=synthetic has splits 'train' and 'val', not 'bogus'"]
    assert not (tmp_path / "run" / "eval").exists()  # neither its RUN/eval/NAME-TIME nor the eval/ it made
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("kept")
    for folder in (tmp_path / "mine", tmp_path / "new" / "eval"):
        with pytest.raises(SegtrainError, match="not 'bogus'"):
            run_eval([f"ckpt={ckpt}", "dataset.val_split=bogus", f"hydra.run.dir={folder}"])
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"] and not (tmp_path / "new").exists()


def test_eval_table_aligns_every_value_under_its_column():
    from segtrain.evaluate import format_report

    names = ["background", "block", "x"]  # all shorter than "pixel accuracy"
    metrics = {"iu": [0.5, 1.0, float("nan")], "dice": [2 / 3, 1.0, float("nan")], "acc": [0.25, 1.0, float("nan")],
               "pixel_acc": 0.9, "mean_acc": 0.5, "mean_iu": 0.75, "mean_dice": 0.8333, "fw_iu": 0.125}
    lines = format_report(names, metrics, {**metrics, "mean_iu": 0.8, "mean_dice": 0.85}).splitlines()
    header = lines[0]  # right-aligned titles: IU, Dice, acc., +CRF IU, Dice, acc.
    ends = [header.index(" IU") + 3, header.index("Dice") + 4, header.index("acc.") + 4,
            header.index("+CRF IU") + 7, header.rindex("Dice") + 4, header.rindex("acc.") + 4]

    def ends_at(line, end):
        return line[end - 1] != " " and line[end:end + 1] in ("", " ")

    for line in lines[1:4]:
        assert all(ends_at(line, end) for end in ends), line
    assert lines[1][ends[1] - 5:ends[1]] == "66.67" and lines[1][ends[4] - 5:ends[4]] == "66.67"
    # every summary row under IU and +CRF IU alike (mean Dice too), nothing after
    summary = lines[5:]
    assert [line.split("  ")[0] for line in summary] == ["pixel accuracy", "mean accuracy", "mean IU", "mean Dice",
                                                         "f.w. IU"]
    for line, (plain, crf) in zip(summary, [
            ("90.00", "90.00"), ("50.00", "50.00"), ("75.00", "80.00"), ("83.33", "85.00"), ("12.50", "12.50")]):
        assert line[ends[0] - 5:ends[0]] == plain and line[ends[3] - 5:] == crf, line
    plain_only = format_report(names, metrics).splitlines()[5:]
    assert {len(line) for line in plain_only} == {ends[0]}, plain_only


@pytest.mark.slow
def test_export_of_a_valid_unet_takes_the_sizes_it_can_and_names_every_file(tiny_cfg, tmp_path, monkeypatch):
    import onnx
    import onnxruntime

    from segtrain.cli.export import run as run_export
    from segtrain.checkpoint import restore
    from segtrain.train import train

    train(tiny_cfg("model=unet", "trainer.max_iters=1"), tmp_path / "unet")
    ckpt = tmp_path / "unet" / "checkpoints" / "last.pt"

    # a failing dynamic export: one line naming a fixed-size export at sizes the U-Net takes; nothing left behind
    def exporter_fails(model, args, path, **kwargs):
        Path(path).write_bytes(b"half an onnx file")
        os.write(2, b"the exporter's chatter\n")
        raise RuntimeError("the exporter gave up")

    with monkeypatch.context() as patch:
        patch.setattr(torch.onnx, "export", exporter_fails)
        with pytest.raises(SegtrainError) as info:
            run_export([f"ckpt={ckpt}", f"out={tmp_path / 'new' / 'deeper' / 'unet.onnx'}", "height=64", "width=110"])
    line, _, kept = str(info.value).partition(" (the exporter's messages: ")
    assert line == ("cannot export unet to ONNX (RuntimeError: the exporter gave up); export one size instead: "
                    "dynamic=false height=100 width=116")
    assert "the exporter's chatter" in Path(kept.rstrip(")")).read_text()
    Path(kept.rstrip(")")).unlink()
    assert not (tmp_path / "new").exists()  # the folders it made for out= are gone too

    path = tmp_path / "onnx" / "unet.onnx"
    result = subprocess.run([Path(sys.executable).parent / "segtrain-export", f"ckpt={ckpt}", f"out={path}",
                             "height=100", "width=110"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    files = [path, path.with_name("unet.onnx.data"), path.with_name("unet.onnx.log")]
    assert f"wrote {', '.join(map(str, files))} (dynamic batch; heights and widths of 16k+4 px (100, 116, 132, " \
           "...) only)" in result.stdout
    assert all(p.is_file() for p in files)
    terminal = result.stdout + result.stderr
    chatter = [line for line in files[2].read_text().splitlines()[1:] if line]  # the exporter's, in the log only
    assert len(chatter) > 20 and not any(line in terminal for line in chatter)
    assert len(terminal.splitlines()) == 5, terminal  # reading, traced at, exporting, checking, wrote
    shape = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape
    dims = [d.dim_param for d in shape.dim]
    assert dims[2:] == ["16*height_steps + 4", "16*width_steps + 4"]  # the file states what it takes
    _, model, _ = restore(ckpt)
    x = torch.randn(2, 3, 132, 148)  # a batch and sizes of that rule the export never saw
    with torch.no_grad():
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(session.run(None, {"image": x.numpy()})[0], model(x).numpy(), rtol=1e-3,
                                   atol=1e-4)


def test_predict_leaves_pixels_outside_the_regions_of_interest_void_and_unpainted(finished_run, tmp_path):
    from PIL import Image
    from omegaconf import OmegaConf

    from segtrain.cli.predict import run as run_predict
    from segtrain.predict import region_files

    ckpt = finished_run[0] / "checkpoints" / "last.pt"
    images, regions = tmp_path / "in", tmp_path / "fov"
    images.mkdir(), regions.mkdir()
    rng = np.random.default_rng(1)
    inside = np.zeros((24, 30), bool)
    inside[4:20, 6:25] = True
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 255, (24, 30, 3), dtype=np.uint8)).save(images / f"{name}.png")
        Image.fromarray(inside.astype(np.uint8) * 255).save(regions / f"{name}_fov.gif")
    assert run_predict([f"ckpt={ckpt}", f"input={images}", f"output={tmp_path / 'all'}", "skip_classes=[]"]) == 0
    assert run_predict([f"ckpt={ckpt}", f"input={images}", f"output={tmp_path / 'roi'}", "skip_classes=[]",
                        f"roi={regions}", "roi_suffix=_fov.gif"]) == 0
    for name in ("a", "b"):
        everywhere = np.array(Image.open(tmp_path / "all" / f"{name}.png"))
        labels = np.array(Image.open(tmp_path / "roi" / f"{name}.png"))
        assert np.array_equal(labels[inside], everywhere[inside]) and (labels[~inside] == 255).all()
        overlay = np.array(Image.open(tmp_path / "roi" / f"{name}_overlay.png").convert("RGB"))[:24, :30]
        photo = np.array(Image.open(images / f"{name}.png"))
        assert np.array_equal(overlay[~inside], photo[~inside])  # every class painted, but not outside
        assert not np.array_equal(overlay[inside], photo[inside])
    # one file for every image
    assert run_predict([f"ckpt={ckpt}", f"input={images / 'a.png'}", f"output={tmp_path / 'one'}",
                        f"roi={regions / 'b_fov.gif'}"]) == 0
    assert (np.array(Image.open(tmp_path / "one" / "a.png"))[~inside] == 255).all()

    (regions / "b_fov.gif").unlink()
    with pytest.raises(SegtrainError, match=r"b_fov.gif: region-of-interest file is missing for b.png; .* "
                                            r"roi_suffix=_fov.gif names it"):
        run_predict([f"ckpt={ckpt}", f"input={images}", f"output={tmp_path / 'missing'}", f"roi={regions}",
                     "roi_suffix=_fov.gif"])
    assert not (tmp_path / "missing").exists()  # stopped before any work
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(regions / "b_fov.gif")
    with pytest.raises(SegtrainError) as info:
        run_predict([f"ckpt={ckpt}", f"input={images}", f"output={tmp_path / 'small'}", f"roi={regions}",
                     "roi_suffix=_fov.gif"])
    assert str(info.value) == f"{regions / 'b_fov.gif'}: region of interest is 5x5 but b.png is 30x24 (width x " \
                              f"height); roi={regions} gives it"
    # by default paired as the checkpoint's training paired them: its image_suffix dropped, its roi_suffix added
    trained = OmegaConf.create({"image_suffix": "_sat.png", "roi_suffix": "_fov.gif"})
    (images / "a.png").rename(images / "a_sat.png")
    assert region_files(str(regions), None, [images / "a_sat.png"], trained, True) == {
        images / "a_sat.png": regions / "a_fov.gif"}
    with pytest.raises(SegtrainError, match=r"roi_suffix=_\{split\}_mask.gif \(the checkpoint's dataset.roi_suffix\) "
                                            r"names regions per split; give roi_suffix="):
        region_files(str(regions), None, [images / "a_sat.png"], OmegaConf.create({"roi_suffix": "_{split}_mask.gif"}),
                     True)
