"""Real bags from other people's tooling, played onto live topics (rosbags + rclpy, /clock): their lying Image
(claims 640x480, carries 30 bytes), fake JPEG and odd stamps are counted, never a crash."""

from __future__ import annotations

from pathlib import Path

import pytest
from sensor_msgs.msg import CompressedImage

from geoloc_node.ros.bagplay import BagPlayer

from .fakes import FakeFactory
from .helpers import make_node

BAGS = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "real_bags"
RS_BAG = BAGS / "rosbags_rs_test_bag_mcap"


@pytest.mark.skipif(not RS_BAG.exists(), reason="../shared/fixtures/real_bags not present")
def test_rosbags_rs_bag_bad_images_are_survived(ros):
    topics = {"image_topic": "/test/sensor_msgs/image", "gps_topic": "/test/sensor_msgs/nav_sat_fix",
              "odom_topic": "/test/nav_msgs/odometry", "camera_info_topic": "/test/sensor_msgs/camera_info"}
    raw = make_node(ros, FakeFactory(), **topics)
    comp = make_node(ros, FakeFactory(), **{**topics, "image_topic": "/test/sensor_msgs/compressed_image",
                                            "image_transport": "compressed"})
    for node in (raw, comp):
        node.trigger_configure()
        node.trigger_activate()
    # the compressed node subscribes to <image_topic>/compressed: bridge the bag's topic name onto it
    player = BagPlayer(ros.tester, RS_BAG, topics=[*topics.values(), "/test/sensor_msgs/compressed_image"], rate=25.0)
    player.prepare()
    bridge = ros.tester.create_publisher(CompressedImage, "/test/sensor_msgs/compressed_image/compressed", 10)

    def transform(topic, t_ns, data):
        if topic == "/test/sensor_msgs/compressed_image":
            bridge.publish(data)
        return data

    assert player.wait_for_subscribers(topics.values())
    assert ros.wait_for(lambda: bridge.get_subscription_count() > 0)
    player.play(transform=transform)
    assert ros.wait_for(lambda: raw.session.problems["image_bad"] >= 1 and comp.session.problems["image_bad"] >= 1)
    assert raw.session.received["gps"] >= 1 and raw.session.received["odometry"] >= 1
    assert raw.lifecycle_state == "active" and comp.lifecycle_state == "active"
