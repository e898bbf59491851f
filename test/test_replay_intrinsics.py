"""replay-eval's intrinsics: which CameraInfo belongs to which image topic, and how K is derived (the node's policy)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from mtl_perception.data.bags import TopicError, find_camera_info_topics, open_bag
from mtl_perception.evaluate.replay import frame_intrinsics


@pytest.mark.parametrize("name", ["real_frames_mcap", "real_frames_sqlite3"])
def test_camera_info_siblings_in_real_frames_bag(realdata_dir, name):
    with open_bag(realdata_dir / "bags" / name) as bag:
        images = ["/dgp/CAMERA_01/image/compressed", "/kitti/image_02/image_raw", "/cityscapes/image_raw"]
        assert find_camera_info_topics(bag, images) == {
            "/dgp/CAMERA_01/image/compressed": "/dgp/CAMERA_01/camera_info",
            "/kitti/image_02/image_raw": "/kitti/image_02/camera_info",
            "/cityscapes/image_raw": None,  # no sibling, and two CameraInfo topics: no guess
        }
        assert find_camera_info_topics(bag, images[:1], "none") == {images[0]: None}
        explicit = find_camera_info_topics(bag, images[2:], "/kitti/image_02/camera_info")
        assert explicit == {"/cityscapes/image_raw": "/kitti/image_02/camera_info"}
        with pytest.raises(TopicError, match="camera_info topic /nope"):
            find_camera_info_topics(bag, images[:1], "/nope")


def _info(k, h=375, w=1242):
    return SimpleNamespace(k=np.asarray(k, np.float64).reshape(-1), height=h, width=w)


def test_frame_intrinsics_policy():
    K = np.array([[700.0, 0, 600], [0, 700, 180], [0, 0, 1]])
    k, how = frame_intrinsics(_info(K), (375, 1242))
    assert how == "camera_info" and np.array_equal(k, K)
    k, how = frame_intrinsics(_info(K), (750, 2484))  # CameraInfo of half the size: K scaled per axis
    assert how == "camera_info_scaled" and k[0, 0] == pytest.approx(1400) and k[0, 2] == pytest.approx(1200.5)
    assert frame_intrinsics(None, (375, 1242)) == (None, "no_camera_info")
    assert frame_intrinsics(_info(np.zeros(9)), (375, 1242)) == (None, "invalid_camera_info")  # uncalibrated
    assert frame_intrinsics(_info(K, 0, 0), (375, 1242)) == (None, "invalid_camera_info")
