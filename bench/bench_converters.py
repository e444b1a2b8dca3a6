"""Benchmark: CompressedImage and PointCloud2 converters, one core (single-threaded Python).

CompressedImage: a 640x480 frame (a synthetic scene, or ``--image FILE`` resized to 640x480)
encoded as JPEG (quality 85) and PNG (level 3, image_transport's defaults), converted to
64x64 with ``resize: area``, JPEG with ``draft`` (the converter's gap 2: decoded at 320x240;
gap 1 for comparison: 160x120) and without. ``vs full`` compares each
result with full decode + resize (``draft: false``) of the same frame: mean, 99th percentile
and maximum absolute difference in grey levels.

PointCloud2: a 64 x 1024 organized cloud (an Ouster-like lidar: x, y, z float32, intensity,
ring and padding, point_step 32), 10 % of the points NaN (non-dense), reduced to a 64 x 1024
range image and to a 128 x 128 x 8 voxel grid.

    python bench/bench_converters.py --seconds 2
    python bench/bench_converters.py --image .venv/lib/python3.11/site-packages/matplotlib/mpl-data/sample_data/grace_hopper.jpg
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
from PIL import Image
from sensor_msgs.msg import CompressedImage, PointCloud2, PointField

from robot_training.interface.converters import Options, make_converter


def scene(height: int = 480, width: int = 640, seed: int = 0) -> np.ndarray:
    """A deterministic outdoor-like frame: sky gradient, 1/f textured ground, solid objects."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    f = np.fft.fft2(rng.normal(size=(height, width)))
    radius = np.hypot(*np.meshgrid(np.fft.fftfreq(width), np.fft.fftfreq(height)))
    radius[0, 0] = 1.0
    texture = np.real(np.fft.ifft2(f / radius))
    texture = (texture - texture.mean()) / texture.std()
    horizon = height * 0.45
    sky = np.stack([120 + 60 * yy / horizon, 160 + 50 * yy / horizon, np.full(yy.shape, 235.0)], -1)
    ground = np.stack([110 + 18 * texture, 100 + 16 * texture, 80 + 12 * texture], -1)
    img = np.where((yy < horizon)[..., None], sky, ground)
    for _ in range(12):  # boxes and discs with sharp edges
        cy, cx, r = rng.uniform(horizon, height), rng.uniform(0, width), rng.uniform(15, 60)
        colour = rng.uniform(20, 235, size=3)
        inside = (np.abs(yy - cy) < r) & (np.abs(xx - cx) < r * 1.5) if rng.random() < 0.5 else \
            np.hypot(yy - cy, xx - cx) < r
        img[inside] = colour
    return np.clip(img, 0, 255).astype(np.uint8)


def encode(pixels: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "jpeg":
        Image.fromarray(pixels).save(buf, "JPEG", quality=85)
    else:
        Image.fromarray(pixels).save(buf, "PNG", compress_level=3)
    return buf.getvalue()


def rate(fn, seconds: float) -> float:
    """Calls per second of ``fn`` over about ``seconds`` (best of three thirds)."""
    fn()
    best = 0.0
    for _ in range(3):
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 3:
            fn()
            n += 1
        best = max(best, n / (time.perf_counter() - t0))
    return best


def converter(msgtype: str, **opts):
    return make_converter(msgtype, Options(opts, "bench"))


def ouster_cloud(rows: int = 64, cols: int = 1024, seed: int = 0) -> PointCloud2:
    rng = np.random.default_rng(seed)
    dtype = np.dtype({"names": ["x", "y", "z", "intensity", "ring"], "formats": ["<f4", "<f4", "<f4", "<f4", "<u2"],
                      "offsets": [0, 4, 8, 16, 20], "itemsize": 32})
    azimuth = np.radians(180.0 - (np.arange(cols) + 0.5) * 360.0 / cols)
    elevation = np.radians(np.linspace(22.0, -22.0, rows))
    rng_m = rng.uniform(0.5, 60.0, size=(rows, cols))
    pts = np.zeros((rows, cols), dtype=dtype)
    pts["x"] = rng_m * np.cos(elevation)[:, None] * np.cos(azimuth)
    pts["y"] = rng_m * np.cos(elevation)[:, None] * np.sin(azimuth)
    pts["z"] = rng_m * np.sin(elevation)[:, None]
    pts["ring"] = np.arange(rows)[:, None]
    lost = rng.random((rows, cols)) < 0.1
    for a in ("x", "y", "z"):
        pts[a][lost] = np.nan
    fields = [PointField(name=n, offset=o, datatype=d, count=1)
              for n, o, d in (("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("intensity", 16, 7), ("ring", 20, 4))]
    return PointCloud2(height=rows, width=cols, fields=fields, is_bigendian=False, point_step=32,
                       row_step=32 * cols, data=pts.tobytes(), is_dense=False)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per row")
    parser.add_argument("--image", help="an image file to use instead of the synthetic scene")
    args = parser.parse_args(argv)
    if args.image:
        pixels = np.asarray(Image.open(args.image).convert("RGB").resize((640, 480), Image.Resampling.LANCZOS))
    else:
        pixels = scene()
    print(f"frame: {args.image or 'synthetic scene'}, 640x480 -> 64x64, resize: area")
    print(f"{'format':6} {'output':6} {'draft':5} {'bytes':>7} {'frames/s':>9} {'vs full: mean':>13} {'p99':>4} {'max':>4}")
    for fmt in ("jpeg", "png"):
        data = encode(pixels, fmt)
        msg = CompressedImage(format=f"rgb8; {fmt} compressed bgr8", data=data)
        for output in ("rgb", "mono"):
            full = converter("sensor_msgs/msg/CompressedImage", height=64, width=64, output=output, draft=False)
            reference = full.to_array(msg).astype(int)
            for gap in ((2, 1, 0) if fmt == "jpeg" else (0,)):
                conv = converter("sensor_msgs/msg/CompressedImage", height=64, width=64, output=output, draft=gap > 0)
                conv.DRAFT_GAP = gap or conv.DRAFT_GAP  # 2 is the converter's; 1 shows why not less
                diff = np.abs(conv.to_array(msg).astype(int) - reference)
                fps = rate(lambda: conv.to_array(msg), args.seconds)
                print(f"{fmt:6} {output:6} {f'gap {gap}' if gap else 'off':5} {len(data):7d} {fps:9.0f} "
                      f"{diff.mean():13.2f} {np.percentile(diff, 99):4.0f} {diff.max():4d}")

    cloud = ouster_cloud()
    n = cloud.height * cloud.width
    print()
    print(f"PointCloud2: {cloud.height}x{cloud.width} organized, point_step {cloud.point_step}, 10 % NaN")
    print(f"{'mode':12} {'output':>12} {'clouds/s':>9} {'points/s':>12}")
    for label, conv in (
        ("range_image", converter("sensor_msgs/msg/PointCloud2", mode="range_image", azimuth_bins=1024,
                                  elevation_bins=64, elevation_min_deg=-22.5, elevation_max_deg=22.5,
                                  range_max=60.0)),
        ("voxel", converter("sensor_msgs/msg/PointCloud2", mode="voxel", bounds=[-32, 32, -32, 32, -2, 2],
                            cells=[128, 128, 8])),
    ):
        per_s = rate(lambda: conv.to_array(cloud), args.seconds)
        print(f"{label:12} {'x'.join(map(str, conv.shape)):>12} {per_s:9.1f} {per_s * n:12,.0f}")


if __name__ == "__main__":
    main()
