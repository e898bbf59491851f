"""imaging.py: every encoding, step padding, endianness, malformed data, camera_info, clouds."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from mtl_perception import imaging
from mtl_perception.imaging import (
    CLOUD_DTYPE,
    CLOUD_FIELDS,
    SUPPORTED_ENCODINGS,
    ImageDecodeError,
    compressed_msg_to_rgb,
    image_fields,
    image_msg_to_rgb,
    image_to_rgb,
    scale_camera_info,
    semantic_cloud,
)

H, W = 6, 8


def _rgb(h: int = H, w: int = W, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _pad(rows: np.ndarray, pad: int) -> bytes:
    """Rows (H, row_bytes) -> bytes with ``pad`` garbage bytes appended to every row."""
    h = rows.shape[0]
    junk = np.full((h, pad), 0xAB, np.uint8)
    return np.concatenate([rows.reshape(h, -1), junk], axis=1).tobytes()


def _msg(arr: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False) -> SimpleNamespace:
    h, w = arr.shape[:2]
    rows = np.ascontiguousarray(arr).view(np.uint8).reshape(h, -1)
    return SimpleNamespace(
        height=h,
        width=w,
        encoding=encoding,
        step=rows.shape[1] + pad,
        is_bigendian=int(bigendian),
        data=_pad(rows, pad),
    )


def _fields(m: SimpleNamespace) -> tuple:
    return (m.height, m.width, m.encoding, m.step, m.is_bigendian, m.data)


@pytest.mark.parametrize("pad", [0, 3])
def test_rgb8_is_zero_copy_and_honours_step(pad):
    rgb = _rgb()
    m = _msg(rgb, "rgb8", pad)
    out = image_to_rgb(*_fields(m))
    np.testing.assert_array_equal(out, rgb)
    buf = np.frombuffer(m.data, np.uint8)
    assert np.shares_memory(out, buf), "rgb8 must be a view of the message buffer"


@pytest.mark.parametrize("pad", [0, 5])
@pytest.mark.parametrize(
    "encoding,make",
    [
        ("bgr8", lambda rgb: rgb[..., ::-1]),
        ("8UC3", lambda rgb: rgb[..., ::-1]),
        ("rgba8", lambda rgb: np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])),
        ("bgra8", lambda rgb: np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 7, np.uint8)])),
    ],
)
def test_colour_encodings_give_the_same_pixels(encoding, make, pad):
    rgb = _rgb()
    out = image_to_rgb(*_fields(_msg(make(rgb), encoding, pad)))
    assert out.dtype == np.uint8 and out.shape == (H, W, 3)
    np.testing.assert_array_equal(out, rgb)


@pytest.mark.parametrize("encoding", ["mono8", "8UC1"])
def test_mono8(encoding):
    g = _rgb()[..., 0].copy()
    out = image_to_rgb(*_fields(_msg(g, encoding, pad=2)))
    np.testing.assert_array_equal(out, np.dstack([g, g, g]))


@pytest.mark.parametrize("bigendian", [False, True])
def test_mono16_both_endiannesses(bigendian):
    v = np.array([[0, 255, 256, 1000], [32768, 65280, 65535, 128]], np.uint16)
    arr = v.astype(">u2" if bigendian else "<u2")
    out = image_to_rgb(*_fields(_msg(arr, "mono16", pad=4, bigendian=bigendian)))
    expected = np.clip(np.rint(v / 256.0), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(out[..., 0], expected)
    np.testing.assert_array_equal(out[..., 2], expected)


def _bayer(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """Mosaic ``rgb`` with the ROS pattern name ('rggb' = R at (0,0), G at (0,1), ...)."""
    ch = {"r": 0, "g": 1, "b": 2}
    mosaic = np.empty(rgb.shape[:2], np.uint8)
    for i, c in enumerate(pattern):
        dy, dx = divmod(i, 2)
        mosaic[dy::2, dx::2] = rgb[dy::2, dx::2, ch[c]]
    return mosaic


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_patterns_recover_flat_colour(pattern):
    colour = np.array([200, 90, 30], np.uint8)
    rgb = np.broadcast_to(colour, (16, 16, 3)).copy()
    out = image_to_rgb(*_fields(_msg(_bayer(rgb, pattern), f"bayer_{pattern}8", pad=4)))
    # demosaicing a flat field is exact away from the border
    np.testing.assert_array_equal(out[4:-4, 4:-4].reshape(-1, 3), np.broadcast_to(colour, (64, 3)))


@pytest.mark.parametrize(
    "encoding,order", [("yuv422", "uyvy"), ("uyvy", "uyvy"), ("yuv422_yuy2", "yuyv"), ("yuyv", "yuyv")]
)
def test_yuv422_variants(encoding, order):
    rgb = _rgb(6, 8)
    yuv = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV)  # full 4:4:4, then subsample chroma by 2 horizontally
    y, u, v = yuv[..., 0], yuv[..., 1], yuv[..., 2]
    packed = np.empty((6, 8, 2), np.uint8)
    packed[..., 1 if order == "uyvy" else 0] = y
    chroma = packed[..., 0 if order == "uyvy" else 1]
    chroma[:, 0::2] = u[:, 0::2]
    chroma[:, 1::2] = v[:, 0::2]
    out = image_to_rgb(*_fields(_msg(packed, encoding, pad=4)))
    ref = cv2.cvtColor(
        np.ascontiguousarray(packed), cv2.COLOR_YUV2RGB_UYVY if order == "uyvy" else cv2.COLOR_YUV2RGB_YUY2
    )
    np.testing.assert_array_equal(out, ref)
    # and it is the image we started from, up to chroma subsampling and YUV rounding
    assert np.abs(out.astype(int) - rgb.astype(int)).mean() < 60
    assert np.abs(out[..., 0].astype(int) - out[..., 1].astype(int)).sum() > 0  # really colour


def test_every_supported_encoding_is_covered():
    covered = {
        "rgb8",
        "bgr8",
        "8UC3",
        "rgba8",
        "bgra8",
        "mono8",
        "8UC1",
        "mono16",
        "yuv422",
        "uyvy",
        "yuv422_yuy2",
        "yuyv",
    } | {f"bayer_{p}8" for p in ("rggb", "bggr", "gbrg", "grbg")}
    assert set(SUPPORTED_ENCODINGS) == covered


@pytest.mark.parametrize(
    "change,match",
    [
        ({"encoding": "32FC1"}, "unsupported encoding"),
        ({"encoding": "jpeg"}, "unsupported encoding"),
        ({"height": 0}, "empty image"),
        ({"width": 0}, "empty image"),
        ({"step": 3 * W - 1}, "step"),
        ({"data": b"\0" * (3 * W * H - 1)}, "truncated"),
        ({"data": b""}, "truncated"),
    ],
)
def test_malformed_messages_raise_decode_error(change, match):
    m = _msg(_rgb(), "rgb8")
    for k, v in change.items():
        setattr(m, k, v)
    with pytest.raises(ImageDecodeError, match=match) as info:
        image_to_rgb(*_fields(m))
    assert issubclass(ImageDecodeError, ValueError)
    reasons = {"unsupported encoding": "encoding", "empty image": "empty", "step": "step", "truncated": "truncated"}
    assert info.value.reason == reasons[match]


def test_odd_width_yuv_rejected():
    m = SimpleNamespace(height=2, width=3, encoding="yuyv", step=6, is_bigendian=0, data=b"\0" * 12)
    with pytest.raises(ImageDecodeError, match="even width"):
        image_to_rgb(*_fields(m))


def test_unpadded_last_row_is_accepted():
    rgb = _rgb()
    m = _msg(rgb, "rgb8", pad=2)
    m.data = m.data[:-2]  # some drivers do not pad the last row
    np.testing.assert_array_equal(image_to_rgb(*_fields(m)), rgb)


def test_data_types_of_rclpy_and_rosbags():
    """rclpy gives array.array('B'), rosbags numpy uint8, hand-built messages lists: same pixels."""
    import array

    rgb = _rgb()
    m = _msg(rgb[..., ::-1], "bgr8", pad=1)
    for data in (m.data, array.array("B", m.data), np.frombuffer(m.data, np.uint8).copy(), list(m.data)):
        m2 = SimpleNamespace(**{**vars(m), "data": data})
        np.testing.assert_array_equal(image_msg_to_rgb(m2, use_cv_bridge=False), rgb)


def test_cv_bridge_and_numpy_paths_agree():
    """Where cv_bridge exists (a ROS install), both decoders give the same pixels."""
    cv_bridge = pytest.importorskip("cv_bridge", reason="cv_bridge is not installable from PyPI here (no ROS install)")
    from sensor_msgs.msg import Image

    del cv_bridge
    rgb = _rgb(16, 16)
    cases = {
        "rgb8": rgb,
        "bgr8": rgb[..., ::-1],
        "rgba8": np.dstack([rgb, rgb[..., :1]]),
        "bgra8": np.dstack([rgb[..., ::-1], rgb[..., :1]]),
        "mono8": rgb[..., 0],
    }
    for encoding, arr in cases.items():
        m = _msg(arr, encoding, pad=4)
        msg = Image(height=m.height, width=m.width, encoding=encoding, step=m.step, data=m.data)
        np.testing.assert_array_equal(
            image_msg_to_rgb(msg, use_cv_bridge=True), image_msg_to_rgb(msg, use_cv_bridge=False), err_msg=encoding
        )


def test_compressed_png_lossless_and_jpeg_close():
    rgb = _rgb(32, 48)
    png = cv2.imencode(".png", rgb[..., ::-1])[1].tobytes()
    np.testing.assert_array_equal(compressed_msg_to_rgb(SimpleNamespace(format="png", data=png)), rgb)
    smooth = cv2.GaussianBlur(rgb, (0, 0), 3)
    jpg = cv2.imencode(".jpg", smooth[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    out = compressed_msg_to_rgb(SimpleNamespace(format="rgb8; jpeg compressed bgr8", data=jpg))
    assert np.abs(out.astype(int) - smooth.astype(int)).mean() < 3


@pytest.mark.parametrize(
    "msg,match",
    [
        (SimpleNamespace(format="jpeg", data=b"not an image at all"), "not a decodable"),
        (SimpleNamespace(format="jpeg", data=b""), "no data"),
        (SimpleNamespace(format="16UC1; compressedDepth png", data=b"\x89PNG"), "compressed depth"),
    ],
)
def test_compressed_garbage(msg, match):
    with pytest.raises(ImageDecodeError, match=match):
        compressed_msg_to_rgb(msg)


@pytest.mark.parametrize(
    "encoding,arr",
    [
        ("mono8", np.arange(12, dtype=np.uint8).reshape(3, 4)),
        ("rgb8", np.arange(36, dtype=np.uint8).reshape(3, 4, 3)),
        ("32FC1", np.array([[1.5, np.nan], [np.inf, 0.0]], np.float32)),
    ],
)
def test_image_fields_roundtrip(encoding, arr):
    f = image_fields(arr, encoding)
    assert isinstance(f["data"], bytes)
    assert (f["height"], f["width"]) == arr.shape[:2]
    assert f["step"] * f["height"] == len(f["data"]) and f["is_bigendian"] == int(
        sys.byteorder == "big" and arr.itemsize > 1
    )
    back = np.frombuffer(f["data"], arr.dtype).reshape(arr.shape)
    np.testing.assert_array_equal(back, arr)
    if encoding in ("mono8", "rgb8"):  # decodes with our own decoder
        decoded = image_to_rgb(f["height"], f["width"], encoding, f["step"], f["is_bigendian"], f["data"])
        np.testing.assert_array_equal(decoded if encoding == "rgb8" else decoded[..., 0], arr)


def test_image_fields_rejects_wrong_dtype_or_shape():
    with pytest.raises(ValueError, match="dtype"):
        image_fields(np.zeros((2, 2), np.float64), "32FC1")
    with pytest.raises(ValueError, match="shape"):
        image_fields(np.zeros((2, 2), np.uint8), "rgb8")
    with pytest.raises(ValueError, match="encoding"):
        image_fields(np.zeros((2, 2), np.uint8), "bayer_rggb8")


def test_scale_camera_info_pixel_centres():
    k = np.array([[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]])
    p = np.array([[500.0, 0, 319.5, -50.0], [0, 500.0, 239.5, 0], [0, 0, 1, 0]])
    k2, p2 = scale_camera_info(k, p, (480, 640), (240, 320))
    # the centre of a 640-wide image (319.5) is the centre of a 320-wide image (159.5)
    assert k2[0, 2] == pytest.approx(159.5) and k2[1, 2] == pytest.approx(119.5)
    assert k2[0, 0] == pytest.approx(250) and k2[1, 1] == pytest.approx(250)
    assert p2[0, 3] == pytest.approx(-25.0) and p2[0, 2] == pytest.approx(159.5)
    np.testing.assert_allclose(k2[2], [0, 0, 1])
    # identity and round trip
    k3, p3 = scale_camera_info(k2, p2, (240, 320), (480, 640))
    np.testing.assert_allclose(k3, k)
    np.testing.assert_allclose(p3, p)
    # a 3D point projects to the same place (in resized pixel units) as the resize moves it
    X = np.array([1.2, -0.7, 9.0])
    u, v = (k @ X / X[2])[:2]
    u2, v2 = (k2 @ X / X[2])[:2]
    assert u2 == pytest.approx((u + 0.5) * 0.5 - 0.5) and v2 == pytest.approx((v + 0.5) * 0.5 - 0.5)


def test_semantic_cloud_backprojects_and_skips_invalid():
    k = np.array([[100.0, 0, 2.0], [0, 50.0, 1.0], [0, 0, 1]])
    depth = np.full((3, 5), 10.0, np.float32)
    depth[0, 0] = np.nan
    depth[2, 4] = 0.0
    depth[1, 1] = np.inf
    labels = np.arange(15, dtype=np.uint8).reshape(3, 5)
    colors = np.zeros((3, 5, 3), np.uint8)
    colors[1, 3] = (255, 128, 1)
    pts, step = semantic_cloud(depth, labels, colors, k, stride=1)
    assert step == CLOUD_DTYPE.itemsize == 20 and pts.dtype == CLOUD_DTYPE
    assert len(pts) == 12
    p = pts[pts["label"] == labels[1, 3]][0]
    assert (p["x"], p["y"], p["z"]) == pytest.approx(((3 - 2) / 100 * 10, 0.0, 10.0))
    assert int(np.array(p["rgb"], np.float32).view(np.uint32)) == 0xFF8001
    assert np.isfinite(pts["x"]).all() and (pts["z"] > 0).all()
    # stride keeps every 2nd row/column of the ORIGINAL pixel grid
    pts2, _ = semantic_cloud(depth, labels, None, k, stride=2)
    assert sorted(pts2["label"].tolist()) == [2, 4, 10, 12]  # (0,0) NaN skipped, (2,4) zero skipped
    assert (np.array(pts2["rgb"], np.float32).view(np.uint32) == 0).all()
    assert [f[0] for f in CLOUD_FIELDS] == ["x", "y", "z", "rgb", "label"]
    assert all(CLOUD_DTYPE.fields[n][1] == off for n, off, _, _ in CLOUD_FIELDS)


def test_semantic_cloud_rejects_bad_args():
    d = np.ones((2, 2), np.float32)
    with pytest.raises(ValueError, match="stride"):
        semantic_cloud(d, np.zeros((2, 2), np.uint8), None, np.eye(3), stride=0)
    with pytest.raises(ValueError, match="same"):
        semantic_cloud(d, np.zeros((3, 2), np.uint8), None, np.eye(3))
    with pytest.raises(ValueError, match="focal"):
        semantic_cloud(d, np.zeros((2, 2), np.uint8), None, np.zeros((3, 3)))


def test_no_rclpy_import():
    assert "rclpy" not in imaging.__dict__
    src = open(imaging.__file__).read()
    assert "import rclpy" not in src
