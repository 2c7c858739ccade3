import pytest

from geoloc_node.config import ConfigError, GeolocConfig, parameter_docs, parameter_types


def test_flat_roundtrip_and_dotted_names():
    cfg = GeolocConfig()
    flat = cfg.to_flat()
    assert flat["health.max_horizontal_std_m"] == cfg.health.max_horizontal_std_m
    assert GeolocConfig.from_flat(flat) == cfg
    cfg2 = GeolocConfig.from_flat({"health.max_horizontal_std_m": "12", "tracking.n_particles": 100.0,
                                   "pipeline.visual_when_healthy": "true", "table.path": "/x.gltab"})
    assert cfg2.health.max_horizontal_std_m == 12.0 and cfg2.tracking.n_particles == 100
    assert cfg2.pipeline.visual_when_healthy is True and cfg2.table.path == "/x.gltab"
    assert cfg2.health.fix_timeout_s == cfg.health.fix_timeout_s


@pytest.mark.parametrize("flat", [{"health.nope": 1}, {"nope": 1}, {"tracking.n_particles": 1.5},
                                  {"health.max_horizontal_std_m": "abc"}, {"pipeline.visual_when_healthy": "maybe"}])
def test_bad_keys_and_values_are_refused(flat):
    with pytest.raises(ConfigError):
        GeolocConfig.from_flat(flat)


def test_every_parameter_is_documented():
    docs = parameter_docs()
    names = [n for n, _ in parameter_types()]
    assert set(names) == set(GeolocConfig().to_flat())
    missing = [n for n in names if not docs.get(n)]
    assert not missing, missing


def test_yaml_ros_parameter_file(tmp_path):
    p = tmp_path / "g.yaml"
    p.write_text("geoloc_node:\n  ros__parameters:\n    health:\n      recover_s: 5.0\n    tracking.seed: 3\n")
    cfg = GeolocConfig.from_yaml(p)
    assert cfg.health.recover_s == 5.0 and cfg.tracking.seed == 3
