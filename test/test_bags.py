"""rosbag2 reading without ROS (mtl_perception.data.bags): topics, types, stamp matching, bad bags."""

from __future__ import annotations

import types

import bad_bags
import numpy as np
import pytest

from mtl_perception.data.bags import (
    BagCorruptError,
    BagMessage,
    NotABagError,
    TopicError,
    find_gt_topics,
    find_image_topic,
    gt_image_to_array,
    match_by_stamp,
    open_bag,
)
from mtl_perception.data.synthetic_io import write_bag


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_synthetic_bag_topics_messages_and_gt(tmp_path, storage):
    info = write_bag(tmp_path / "b", seed=2, n_frames=3, height=32, width=48, storage=storage)
    with open_bag(tmp_path / "b") as bag:
        assert bag.storage_id == storage and bag.metadata_version == 9
        assert {t: i.count for t, i in bag.topics.items()} == dict.fromkeys(info["topics"], 3)
        assert find_image_topic(bag) == ["/camera/image_raw"]
        assert find_gt_topics(bag) == ("/camera/gt/semantic", "/camera/gt/depth")
        msgs = list(bag.messages(["/camera/image_raw", "/camera/gt/depth"]))
        assert len(msgs) == 6 and all(m.error is None for m in msgs)
        assert msgs[0].stamp_ns == info["start_ns"] == msgs[0].timestamp
        depth = gt_image_to_array(next(m.msg for m in msgs if m.topic.endswith("depth")))
        assert depth.shape == (32, 48) and depth.dtype == np.float32
        assert not bag.errors and not bag.message_errors


def test_single_storage_file_opens(tmp_path):
    write_bag(tmp_path / "b", seed=2, n_frames=2, height=32, width=48, storage="mcap")
    with open_bag(next((tmp_path / "b").glob("*.mcap"))) as bag:
        assert bag.topics["/camera/image_raw"].count == 2


def _msg(topic, stamp, i):
    sec, ns = divmod(stamp, 10**9)
    header = types.SimpleNamespace(stamp=types.SimpleNamespace(sec=sec, nanosec=ns))
    return BagMessage(topic, "sensor_msgs/msg/Image", stamp, b"", types.SimpleNamespace(header=header), index=i)


def test_match_by_stamp_tolerance_order_and_missing():
    ms = 1_000_000
    stream = [
        _msg("/gt", 0, 0),  # GT before its image
        _msg("/img", 1 * ms, 1),
        _msg("/img", 100 * ms, 2),
        _msg("/img", 200 * ms, 3),  # its GT comes late, within tolerance
        _msg("/gt", 203 * ms, 4),
        _msg("/gt", 300 * ms, 5),
        _msg("/img", 400 * ms, 6),  # no GT at all
    ]
    out = list(match_by_stamp(stream, ["/img"], ["/gt"], tolerance_ns=5 * ms))
    assert [m.timestamp // ms for m, _ in out] == [1, 100, 200, 400]
    assert [None if g["/gt"] is None else g["/gt"].timestamp // ms for _, g in out] == [0, None, 203, None]


def test_gt_image_honours_step_padding_and_16bit_mm():
    h, w, step = 2, 3, 8  # 2 bytes of padding per mono8 row
    data = bytes([1, 2, 3, 0, 0, 9, 9, 9, 4, 5, 6, 0, 0, 9, 9, 9])
    m = types.SimpleNamespace(height=h, width=w, encoding="mono8", step=step, is_bigendian=0, data=data)
    assert gt_image_to_array(m).tolist() == [[1, 2, 3], [4, 5, 6]]
    mm = np.array([[1000, 0], [2500, 65535]], ">u2")
    m16 = types.SimpleNamespace(height=2, width=2, encoding="16UC1", step=4, is_bigendian=1, data=mm.tobytes())
    d = gt_image_to_array(m16)
    assert d[0, 0] == 1.0 and np.isnan(d[0, 1]) and d[1, 0] == 2.5
    bad = types.SimpleNamespace(height=2, width=3, encoding="mono8", step=2, is_bigendian=0, data=data)
    with pytest.raises(ValueError, match="inconsistent"):
        gt_image_to_array(bad)


# ---------------------------------------------------------------------- bad-bag corpus
def test_truncated_mcap_keeps_complete_chunks(tmp_path):
    with open_bag(bad_bags.truncated(tmp_path, "mcap")) as bag:
        n = sum(1 for m in bag.messages() if m.error is None)
        assert 0 < n < 10
        assert any("truncated or corrupt" in e for e in bag.errors)
        assert bag.expected_count == 10


def test_truncated_sqlite3_keeps_readable_rows(tmp_path):
    path = bad_bags.truncated(tmp_path, "sqlite3")
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    with open_bag(path) as bag:
        n = sum(1 for m in bag.messages() if m.error is None)
        assert 0 < n < 32 and bag.errors
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before  # the bag is never modified


@pytest.mark.parametrize("case", ["corrupt_metadata", "wrong_metadata"])
def test_bad_metadata_reads_storage_directly(tmp_path, case):
    with open_bag(bad_bags.ALL[case](tmp_path)) as bag:
        assert sum(1 for _ in bag.messages()) == 24
        assert any("read" in w and "directly" in w for w in bag.warnings)


def test_unrecoverable_bags_raise_one_line_errors(tmp_path):
    with pytest.raises(NotABagError, match="no metadata.yaml and no .mcap/.db3"):
        open_bag(bad_bags.not_a_bag(tmp_path))
    with pytest.raises(BagCorruptError, match="database files are missing"):
        open_bag(bad_bags.metadata_only(tmp_path))
    with pytest.raises(NotABagError, match="does not exist"):
        open_bag(tmp_path / "nope")
    junk = tmp_path / "junk.mcap"
    junk.write_bytes(b"not an mcap at all")
    with pytest.raises(BagCorruptError, match="cannot read bag"):
        open_bag(junk)


def test_unknown_type_recorded_per_message(tmp_path):
    with open_bag(bad_bags.unknown_type(tmp_path)) as bag:
        msgs = list(bag.messages())
        weird = [m for m in msgs if m.topic == "/weird"]
        assert len(weird) == 4 and all("unknown message type mtl_test/msg/Weird" in m.error for m in weird)
        assert all(m.error is None for m in msgs if m.topic == "/camera/image_raw")
        with pytest.raises(TopicError, match="has type mtl_test/msg/Weird"):
            find_image_topic(bag, "/weird")


def test_corrupt_messages_do_not_stop_iteration(tmp_path):
    with open_bag(bad_bags.corrupt_messages(tmp_path)) as bag:
        errs = [m.index for m in bag.messages() if m.error]
        assert errs == [2, 3] and len(bag.message_errors) == 2


def test_empty_and_missing_topics(tmp_path):
    with open_bag(bad_bags.empty_image_topic(tmp_path)) as bag:
        with pytest.raises(TopicError, match=r"image topics /camera/image_raw have no messages.*/chatter"):
            find_image_topic(bag)
        with pytest.raises(TopicError, match="has no messages"):
            find_image_topic(bag, "/camera/image_raw")
        with pytest.raises(TopicError, match="/nope is not in bag"):
            find_gt_topics(bag, semantic="/nope")


def test_talker_like_bag_no_image_topic(tmp_path):
    with open_bag(bad_bags.talker_like(tmp_path)) as bag:
        with pytest.raises(TopicError, match=r"no image topic .*/topic \(std_msgs/msg/String, 10 msgs\)"):
            find_image_topic(bag)


# ---------------------------------------------------------------------- real bags (../shared)
@pytest.mark.parametrize("name", ["real_frames_mcap", "real_frames_sqlite3"])
def test_real_frames_bags(realdata_dir, name):
    with open_bag(realdata_dir / "bags" / name) as bag:
        topics = find_image_topic(bag, "all")
        assert set(topics) == {"/cityscapes/image_raw", "/kitti/image_02/image_raw", "/dgp/CAMERA_01/image/compressed"}
        assert find_gt_topics(bag) == (None, None)
        msgs = list(bag.messages(topics))
        assert len(msgs) == 5 and all(m.error is None and m.stamp_ns for m in msgs)


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_ros2_bag_recorded_talker(realdata_dir, storage):
    """rosbags' own Reader yields 0 messages here (QoS mismatch); ours reads all 20 and explains the topics."""
    with open_bag(realdata_dir / "bags" / "rosbag2_talker" / storage / "talker") as bag:
        assert bag.metadata_version == 4
        msgs = list(bag.messages())
        assert len(msgs) == 20 and all(m.error is None for m in msgs)
        assert {m.msg.data for m in msgs if m.topic == "/topic"} >= {"Hello, world! 0"}
        with pytest.raises(TopicError, match="no image topic"):
            find_image_topic(bag)


def test_bag_without_stored_definitions(realdata_dir):
    with open_bag(realdata_dir / "bags" / "selfdriving_sim_bags" / "speed") as bag:
        assert not bag.topics["/cmd_vel"].has_definition
        first = next(bag.messages())
        assert first.error is None and hasattr(first.msg, "linear")
