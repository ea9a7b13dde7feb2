"""Image grids: grey and RGB images tiled and written as PNG."""

import numpy as np
from PIL import Image

from tf_gkd import images


def test_grids_keep_the_channels_and_rgb_pngs_are_in_colour(tmp_path):
    red = np.zeros((4, 8, 8, 3), np.float32) - 1.0
    red[..., 0] = 1.0
    grid = images.make_grid(red, cols=2)
    assert grid.shape == (2 * 9 + 1, 2 * 9 + 1, 3)
    np.testing.assert_array_equal(grid[1, 1], [255, 0, 0])
    assert images.make_grid(np.zeros((3, 5, 5, 1), np.float32)).shape[-1] == 1
    images.save_grid_png(red, str(tmp_path / "red.png"))
    pixels = np.asarray(Image.open(tmp_path / "red.png").convert("RGB")).reshape(-1, 3).astype(int)
    assert np.any((pixels[:, 0] > 200) & (pixels[:, 1] < 50) & (pixels[:, 2] < 50))  # Red, not grey.
