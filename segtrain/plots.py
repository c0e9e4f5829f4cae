"""Pictures of a validation: the row-normalised confusion matrix and the per-class IU bar chart (matplotlib, drawn
off-screen), for segtrain-eval's files and TensorBoard."""
import numpy as np


def figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg")  # no display: files and TensorBoard only
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def confusion_figure(confusion, class_names, title: str = "confusion (rows: ground truth, % of its pixels)"):
    """Rows normalised to 100 % (what each true class was predicted as); class names on both axes, cells
    annotated up to 25 classes, font sizes shrinking so that 40 classes stay readable."""
    counts = np.asarray(confusion, dtype=np.float64)
    rows = counts.sum(1, keepdims=True)
    percent = np.divide(100 * counts, rows, out=np.zeros_like(counts), where=rows > 0)
    n = len(class_names)
    size = max(5.0, 0.3 * n + 2.5)
    fig = figure(size + 1.2, size)
    ax = fig.add_subplot()
    image = ax.imshow(percent, cmap="Blues", vmin=0, vmax=100)
    fig.colorbar(image, ax=ax, shrink=0.8, label="% of the true class's pixels")
    font = max(6.0, min(10.0, 260 / max(n, 1)))
    ax.set_xticks(range(n), class_names, rotation=90, fontsize=font)
    ax.set_yticks(range(n), class_names, fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    ax.set_title(title, fontsize=10)
    if n <= 25:
        for (row, col), value in np.ndenumerate(percent):
            if rows[row, 0] > 0 and value >= 0.5:
                ax.text(col, row, f"{value:.0f}", ha="center", va="center", fontsize=font * 0.8,
                        color="white" if value > 60 else "black")
    return fig


def iu_bar_figure(iu, class_names, title: str = "IU per class (%)"):
    """Horizontal bars, one per class, each value written just past its bar's end, in a margin right of 100 that
    takes "100.0" (a class absent from both ground truth and prediction has no bar and "-")."""
    values = [np.nan if v is None else 100 * float(v) for v in iu]
    n = len(class_names)
    fig = figure(6.0, max(2.5, 0.25 * n + 1.0))
    ax = fig.add_subplot()
    ax.barh(range(n), np.nan_to_num(values), color="tab:blue")
    ax.set_yticks(range(n), class_names, fontsize=max(5.0, min(10.0, 220 / max(n, 1))))
    ax.invert_yaxis()
    ax.set_xlim(0, 112)
    ax.set_xticks(range(0, 101, 20))
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title(title, fontsize=10)
    for row, value in enumerate(values):
        ax.text(value + 1 if value == value else 1, row, f"{value:.1f}" if value == value else "-", va="center",
                fontsize=7)
    return fig


def save_png(fig, path) -> None:
    fig.savefig(path)


def write_confusion_csv(path, confusion, class_names) -> None:
    """Pixels, rows the ground truth and columns the prediction, with the class names as headers."""
    import csv

    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["true \\ predicted", *class_names])
        for name, row in zip(class_names, confusion):
            writer.writerow([name, *[int(v) for v in row]])
