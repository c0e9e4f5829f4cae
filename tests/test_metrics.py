import math

import pytest
import torch

from segtrain.metrics import ConfusionMatrix


def metrics_of(target, pred, num_classes=3, chunks=1):
    confusion = ConfusionMatrix(num_classes)
    for t, p in zip(torch.as_tensor(target).chunk(chunks), torch.as_tensor(pred).chunk(chunks)):
        confusion.update(t, p)
    return confusion.hist, confusion.compute()


def test_ignored_pixels_and_class_absent_from_both():
    # 255 and 7 are outside [0, 3): those pixels are skipped even though something (class 2) is predicted there.
    target = [0, 0, 0, 1, 1, 0, 255, 7]
    pred = [0, 1, 0, 1, 0, 0, 2, 2]
    hist, m = metrics_of(target, pred)
    assert hist.tolist() == [[3, 1, 0], [1, 1, 0], [0, 0, 0]]
    assert m["pixel_acc"] == pytest.approx(4 / 6)
    assert m["mean_acc"] == pytest.approx((3 / 4 + 1 / 2) / 2)
    assert m["iu"][0] == pytest.approx(3 / 5)
    assert m["iu"][1] == pytest.approx(1 / 3)
    assert math.isnan(m["iu"][2])  # absent from ground truth and prediction: skipped by the mean
    assert m["mean_iu"] == pytest.approx((3 / 5 + 1 / 3) / 2)
    assert m["fw_iu"] == pytest.approx(4 / 6 * 3 / 5 + 2 / 6 * 1 / 3)


def test_class_predicted_but_absent_from_ground_truth_counts_as_zero():
    hist, m = metrics_of([0, 1, 1], [0, 2, 1])
    assert hist.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 0]]
    assert m["iu"] == pytest.approx([1.0, 0.5, 0.0])
    assert m["mean_iu"] == pytest.approx(0.5)  # FCN's nanmean: the 0 counts
    assert m["mean_acc"] == pytest.approx(0.75)  # accuracy of class 2 is NaN (no ground truth) and skipped
    assert m["fw_iu"] == pytest.approx(1 / 3 * 1.0 + 2 / 3 * 0.5)
    assert m["pixel_acc"] == pytest.approx(2 / 3)


def test_accumulates_over_batches_like_one_pass():
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 4, (4, 9, 7), generator=g)
    target[target == 3] = 255
    pred = torch.randint(0, 3, (4, 9, 7), generator=g)
    one_pass, _ = metrics_of(target, pred)
    batched, _ = metrics_of(target, pred, chunks=4)
    assert torch.equal(one_pass, batched)
    assert one_pass.sum() == (target != 255).sum()


def test_confusion_matrix_files_from_a_hand_made_matrix(tmp_path):
    """3 classes: background 8 px (6 right, 2 taken for road), road 4 (all right), car absent but predicted once."""
    import csv

    from segtrain.metrics import metrics_from_hist
    from segtrain.plots import confusion_figure, save_png, write_confusion_csv

    hist = torch.tensor([[6, 2, 0], [0, 4, 0], [0, 0, 0]])
    metrics = metrics_from_hist(hist)
    assert metrics["acc"][:2] == [0.75, 1.0] and metrics["acc"][2] != metrics["acc"][2]  # NaN: no car pixels
    assert metrics["confusion"] == hist.tolist()
    names = ["background", "road", "car"]
    write_confusion_csv(tmp_path / "confusion.csv", metrics["confusion"], names)
    rows = list(csv.reader(open(tmp_path / "confusion.csv")))
    assert rows == [["true \\ predicted", "background", "road", "car"], ["background", "6", "2", "0"],
                    ["road", "0", "4", "0"], ["car", "0", "0", "0"]]
    fig = confusion_figure(metrics["confusion"], names)
    ax = fig.axes[0]
    assert ax.images[0].get_array().tolist() == [[75.0, 25.0, 0.0], [0.0, 100.0, 0.0], [0.0, 0.0, 0.0]]  # rows %
    assert [t.get_text() for t in ax.get_xticklabels()] == names == [t.get_text() for t in ax.get_yticklabels()]
    save_png(fig, tmp_path / "confusion.png")
    from PIL import Image

    assert Image.open(tmp_path / "confusion.png").size == (620, 500)  # 6.2 x 5 inches at 100 dpi


def test_confusion_figure_stays_readable_for_40_classes():
    from segtrain.plots import confusion_figure

    fig = confusion_figure(torch.eye(40, dtype=torch.long).tolist(), [f"class{i}" for i in range(40)])
    ax = fig.axes[0]
    assert len(ax.get_xticklabels()) == 40 and ax.get_xticklabels()[0].get_fontsize() >= 5
    assert fig.get_size_inches()[1] >= 0.3 * 40  # about 0.3 inch per class


def test_iu_bar_chart_writes_each_value_past_its_bar():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from segtrain.plots import iu_bar_figure

    fig = iu_bar_figure([1.0, 0.968, 0.5, None, 0.0], ["background", "block", "disc", "wire", "dot"])
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    ax, renderer = fig.axes[0], canvas.get_renderer()
    assert [t.get_text() for t in ax.texts] == ["100.0", "96.8", "50.0", "-", "0.0"]
    for bar, text in zip(ax.patches, ax.texts):  # beside its bar, not over it, and inside the axes
        bar_box, text_box = bar.get_window_extent(renderer), text.get_window_extent(renderer)
        assert bar_box.x1 <= text_box.x0 and text_box.x1 <= ax.get_window_extent(renderer).x1
        assert bar_box.y0 <= (text_box.y0 + text_box.y1) / 2 <= bar_box.y1


def test_dice_is_scikit_learns_f1_on_random_label_maps_with_ignored_pixels():
    """Per-class Dice (2TP / (2TP + FP + FN)) and mean Dice from the confusion matrix equal scikit-learn's F1 on
    the labelled pixels; a class absent from both ground truth and prediction is NaN (sklearn's zero_division) and
    skipped by the mean, one only predicted is 0, as for IU."""
    import numpy as np
    from sklearn.metrics import f1_score

    g = torch.Generator().manual_seed(0)
    for trial in range(5):
        target = torch.randint(0, 5, (3, 17, 13), generator=g)
        pred = torch.randint(0, 5, (3, 17, 13), generator=g)
        target[torch.rand(target.shape, generator=g) < 0.25] = 255  # ignored, whatever is predicted there
        target[target == 3] = 4  # class 3: predicted, never labelled
        if trial % 2:
            pred[pred == 2] = 1  # class 2: labelled, never predicted
        pred[pred == 0] = 1
        target[target == 0] = 1  # class 0: absent from both
        _, m = metrics_of(target, pred, num_classes=5, chunks=3)
        keep = target != 255
        expected = f1_score(target[keep].numpy(), pred[keep].numpy(), labels=range(5), average=None,
                            zero_division=np.nan)
        np.testing.assert_allclose(m["dice"], expected, rtol=1e-12)
        assert math.isnan(m["dice"][0]) and m["dice"][3] == 0
        assert m["mean_dice"] == pytest.approx(np.nanmean(expected), rel=1e-12)
        iu = np.array(m["iu"])
        np.testing.assert_allclose(m["dice"], 2 * iu / (1 + iu), rtol=1e-12)  # Dice = 2 IU / (1 + IU)


def test_monitor_names_a_metric_or_a_class_iu():
    from segtrain.errors import SegtrainError
    from segtrain.metrics import check_monitor, metrics_from_hist, monitored

    names = ["background", "road", "car"]
    metrics = metrics_from_hist(torch.tensor([[6, 2, 0], [0, 4, 0], [0, 1, 1]]))
    assert monitored(metrics, "mean_dice", names) == metrics["mean_dice"]
    assert monitored(metrics, "car_iu", names) == metrics["iu"][2] == 0.5
    check_monitor("road_iu", names)
    with pytest.raises(SegtrainError) as info:
        check_monitor("bus_iu", names)
    assert str(info.value) == ("trainer.monitor=bus_iu: expected one of mean_iu, mean_dice, pixel_acc, "
                               "background_iu, road_iu, car_iu")
