import math

from geoloc_node.camera_check import camera_hfov_deg, check_camera


def _k(fx):
    return [fx, 0.0, 0.0, 0.0, fx, 0.0, 0.0, 0.0, 1.0]


def test_panorama_model_and_cameras():
    assert check_camera("panorama", None, 512, 128, _k(512 / (2 * math.pi)), "equirectangular").ok
    assert check_camera("panorama", None, 512, 128).ok and not check_camera("panorama", None, 512, 128).complete
    pinhole = check_camera("panorama", None, 320, 240, _k(160.0), "plumb_bob")
    assert not pinhole.ok and "panorama" in pinhole.detail
    wide_but_pinhole = check_camera("panorama", None, 1024, 256, _k(512.0), "plumb_bob")  # 2:1... 4:1 but 90 deg
    assert not wide_but_pinhole.ok and "covers 90 degrees" in wide_but_pinhole.detail


def test_pinhole_model_field_of_view():
    assert check_camera("pinhole", 90.0, 320, 240, _k(160.0), "plumb_bob").ok  # 90 degrees
    narrow = check_camera("pinhole", 90.0, 320, 240, _k(400.0), "plumb_bob")  # about 44 degrees
    assert not narrow.ok and "44" in narrow.detail
    assert not check_camera("pinhole", 90.0, 512, 128, _k(512 / (2 * math.pi)), "equirectangular").ok
    assert check_camera("pinhole", 90.0, 320, 240).ok  # no K: shape only
    assert camera_hfov_deg(320, [0.0] * 9) is None  # an uncalibrated CameraInfo
