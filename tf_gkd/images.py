"""Image grids and plots: one array for TensorBoard, one PNG (matplotlib) for people."""

import math

import matplotlib

matplotlib.use("Agg")  # Files only; no display on training machines.
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tf_gkd import files  # noqa: E402


def make_grid(images, cols=None, pad=1):
    """Tiles images [N, H, W, C] in [-1, 1] into one uint8 image [rows·(H+pad), cols·(W+pad), C]."""
    images = np.asarray(images, dtype=np.float32)
    n, h, w, c = images.shape
    cols = cols or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, np.uint8)
    pixels = np.clip(np.round((images + 1.0) * 127.5), 0, 255).astype(np.uint8)
    for i in range(n):
        r, col = divmod(i, cols)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[top : top + h, left : left + w] = pixels[i]
    return grid


def save_grid_png(images, path, title=None, cols=None):
    """Writes images [N, H, W, C] in [-1, 1] (grey or RGB) as one PNG grid at `path` (atomically)."""
    grid = make_grid(images, cols=cols)
    fig, ax = plt.subplots(figsize=(grid.shape[1] / 40, grid.shape[0] / 40 + (0.4 if title else 0)), dpi=100)
    show_image(ax, grid)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout(pad=0.2)
    _save_figure(fig, path)
    plt.close(fig)


def show_image(ax, image):
    """Draws a uint8 image [H, W, 1 or 3] on matplotlib axes `ax`: grey in a grey colour map, RGB as is."""
    if image.shape[-1] == 1:
        ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(image, interpolation="nearest")


def _save_figure(fig, path):
    """Writes `fig` as a PNG at `path` atomically."""
    with files.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def scatter_plot(points, labels, path=None, title=None, label_names=None):
    """Plots 2-D `points` [N, 2] coloured by integer `labels` [N]; returns the plot as uint8 RGB [H, W, 3].

    The array is for `tf.summary.image`; with `path`, the plot is also written
    there as a PNG. `label_names` (one per class) label the legend.
    """
    points = np.asarray(points, np.float32)
    labels = np.asarray(labels)
    if points.ndim != 2 or points.shape[1] != 2 or len(labels) != len(points):
        raise ValueError(
            f"Expected points [N, 2] and labels [N]. Received: points {points.shape}, labels {labels.shape}."
        )
    fig, ax = plt.subplots(figsize=(6, 5.5), dpi=100)
    cmap = plt.get_cmap("tab10")
    for label in np.unique(labels):
        chosen = labels == label
        name = label_names[label] if label_names is not None else str(label)
        ax.scatter(points[chosen, 0], points[chosen, 1], s=2, alpha=0.6, color=cmap(int(label) % 10), label=name)
    ax.legend(markerscale=5, fontsize=7, loc="upper right", framealpha=0.8)
    ax.set_xlabel("z₁")
    ax.set_ylabel("z₂")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout(pad=0.3)
    return figure_rgb(fig, path)


def figure_rgb(fig, path=None):
    """Closes `fig` and returns it as uint8 RGB [H, W, 3] (for `tf.summary.image`); with `path`, writes a PNG too."""
    if path:
        _save_figure(fig, path)
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return rgb


def rows_plot(rows, path=None, title=None):
    """Plots labelled rows of images side by side, one row per label, aligned column by column.

    Args:
      rows: (label, images [N, H, W, C] in [-1, 1]) pairs; image i of every
        row lands in column i (e.g. the same latent through several generators).
      path: where to write the PNG, if anywhere.
      title: a title above the rows.

    Returns:
      The plot as uint8 RGB [H, W, 3].
    """
    if not rows:
        raise ValueError("rows_plot needs at least one row.")
    cols = max(len(images) for _, images in rows)
    grids = [make_grid(images, cols=cols) for _, images in rows]
    width = grids[0].shape[1] / 40 + 1.5  # Room on the left for the labels.
    height = sum(g.shape[0] for g in grids) / 40 + (0.4 if title else 0.1)
    fig, axes = plt.subplots(len(rows), 1, figsize=(width, height), dpi=100, squeeze=False)
    for ax, (label, _), grid in zip(axes[:, 0], rows, grids):
        show_image(ax, grid)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(pad=0.2)
    return figure_rgb(fig, path)
