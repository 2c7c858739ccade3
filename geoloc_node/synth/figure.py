"""The picture in docs/synthetic_sample.png: one aerial tile beside the panorama and forward camera view at its centre.

    python -m geoloc_node.synth.figure docs/synthetic_sample.png [--seed 0] [--size-m 600]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from .render import aerial_tile, render_panorama, render_pinhole
from .world import WorldConfig, make_world


def pick_view(world, rng: np.random.Generator) -> tuple[float, float, float]:
    """A road point with buildings around (many wall cells within 40 m), heading along the road."""
    graph = world.road_graph
    best, best_score = None, -1.0
    for edge in rng.permutation(len(graph.edges))[:40]:
        a, b = graph.nodes[graph.edges[edge]]
        east, north = (a + b) / 2
        yy, xx = np.mgrid[-40:41:4, -40:41:4]
        score = float((world.sample(east + xx.ravel(), north + yy.ravel())["height"] > 4).mean())
        if score > best_score:
            heading = math.degrees(math.atan2(b[0] - a[0], b[1] - a[1])) % 360
            best, best_score = (float(east), float(north), heading), score
    return best


def make_figure(world, east: float, north: float, heading_deg: float, path: Path, tile_size_m: float = 60.0) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tile = aerial_tile(world, east, north, size_m=tile_size_m, out_px=256)
    pano = render_panorama(world, east, north, heading_deg, size=(128, 512))
    forward = render_pinhole(world, east, north, heading_deg, hfov_deg=90.0, size=(240, 320))
    lat, lon = (float(v) for v in world.frame.to_latlon(east, north))
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.6), gridspec_kw={"width_ratios": [1, 2.9, 1.35]})
    axes[0].imshow(tile, extent=(-tile_size_m / 2, tile_size_m / 2, -tile_size_m / 2, tile_size_m / 2))
    dx, dy = math.sin(math.radians(heading_deg)), math.cos(math.radians(heading_deg))
    axes[0].annotate("", xy=(dx * 12, dy * 12), xytext=(0, 0), arrowprops={"color": "yellow", "width": 2})
    axes[0].plot(0, 0, "o", color="yellow")
    axes[0].set_title(f"aerial tile, {tile_size_m:g} m, north up", fontsize=10)
    axes[0].set_xlabel("east (m)")
    axes[1].imshow(pano)
    axes[1].set_title(f"panorama 128x512: column 0 looks at heading {heading_deg:.0f} deg, clockwise", fontsize=10)
    axes[1].set_xticks(np.linspace(0, 512, 5), [f"{(heading_deg + a) % 360:.0f}" for a in (0, 90, 180, 270, 360)])
    axes[1].set_yticks([])
    axes[1].set_xlabel("compass azimuth (deg)")
    axes[2].imshow(forward)
    axes[2].set_title("forward camera, hfov 90 deg", fontsize=10)
    axes[2].axis("off")
    fig.suptitle(f"synthetic world (seed {world.config.seed}) at east {east:.0f} m, north {north:.0f} m "
                 f"({lat:.5f}, {lon:.5f}); camera 2 m above the road", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size-m", type=float, default=600.0)
    args = parser.parse_args(argv)
    world = make_world(WorldConfig(size_m=args.size_m, seed=args.seed))
    east, north, heading = pick_view(world, np.random.default_rng(args.seed))
    print(f"figure written to {make_figure(world, east, north, heading, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
