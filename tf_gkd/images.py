"""Image grids: one array for TensorBoard, one PNG (matplotlib) for people."""

import math
import os

import matplotlib

matplotlib.use("Agg")  # Files only; no display on training machines.
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


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
    """Writes images [N, H, W, 1] in [-1, 1] as one PNG grid at `path` (atomically)."""
    grid = make_grid(images, cols=cols)
    fig, ax = plt.subplots(figsize=(grid.shape[1] / 40, grid.shape[0] / 40 + (0.4 if title else 0)), dpi=100)
    ax.imshow(grid[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout(pad=0.2)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.png"
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
