"""PNG snapshots of a cloud from a few viewpoints (matplotlib, off-screen), for reports."""
from __future__ import annotations

import os

import numpy as np

from n3f_ros.core.cloud.validate import check_uint8_colors, check_xyz

#: (elevation, azimuth) in degrees of the default views: oblique, top-down, side.
DEFAULT_VIEWS = ((30.0, -60.0), (89.0, -90.0), (0.0, -90.0))


def save_cloud_views_png(path, xyz, rgb=None, title: str = '', max_points: int = 20000,
                         views=DEFAULT_VIEWS, point_size: float = 1.0, seed: int = 0) -> None:
    """Scatter ``xyz`` (N, 3) metres coloured by ``rgb`` (N, 3) uint8 (grey if None) from each
    (elevation, azimuth) in ``views``, side by side, into a PNG at ``path``.

    At most ``max_points`` random points (``seed``) are drawn; axes have equal scale.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    xyz = check_xyz(xyz, allow_empty=True)
    rgb = (np.full((len(xyz), 3), 128, np.uint8) if rgb is None else check_uint8_colors(rgb, len(xyz)))
    if len(xyz) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(xyz), max_points, replace=False))
        xyz, rgb = xyz[keep], rgb[keep]
    fig = Figure(figsize=(4.0 * len(views), 4.2), dpi=100)
    FigureCanvasAgg(fig)
    if len(xyz):
        lo, hi = xyz.min(axis=0), xyz.max(axis=0)
        mid, half = (lo + hi) / 2, max(float((hi - lo).max()) / 2, 1e-3)
    for i, (elev, azim) in enumerate(views):
        ax = fig.add_subplot(1, len(views), i + 1, projection='3d')
        if len(xyz):
            ax.scatter(xyz[:, 0], xyz[:, 1], xyz[:, 2], c=rgb / 255.0, s=point_size, linewidths=0,
                       depthshade=False)
            for setter, m in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), mid):
                setter(m - half, m + half)
        ax.view_init(elev=elev, azim=azim)
        ax.set_xlabel('x [m]')
        ax.set_ylabel('y [m]')
        ax.set_zlabel('z [m]')
        ax.set_title(f'elev {elev:.0f}, azim {azim:.0f}', fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(os.fspath(path))
