"""Lifecycle transitions with real rclpy: configure builds the pipeline on the inference thread, a bad table path
leaves the node unconfigured with the reason in the log and /diagnostics, cleanup releases everything."""

from __future__ import annotations

import gc

from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.lifecycle import TransitionCallbackReturn

from .fakes import FakeFactory
from .helpers import make_node


def _status(arrays, name="geoloc_node: localization"):
    for arr in reversed(arrays):
        for st in arr.status:
            if st.name == name:
                return st
    return None


def test_transitions_build_and_release_the_pipeline(ros):
    factory = FakeFactory()
    node = make_node(ros, factory, **{"output.diagnostics_period_s": 0.1})
    diags = ros.collect(DiagnosticArray, "/diagnostics")
    # /diagnostics in the unconfigured state already
    assert ros.wait_for(lambda: _status(diags) is not None)
    assert "unconfigured" in _status(diags).message

    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.lifecycle_state == "inactive"
    assert gc.get_freeze_count() > 0  # what lives as long as the configuration is kept out of full collections
    pipeline = factory.built[-1]
    assert pipeline.build_thread == "geoloc_inference"  # the encoder is created on the thread that will use it
    assert node.count_subscribers("/gps/fix") == 0 and not node._subs

    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    assert node.lifecycle_state == "active" and len(node._subs) == 4
    assert ros.wait_for(lambda: _status(diags) is not None and _status(diags).message.startswith("GPS healthy"))

    assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    assert node.lifecycle_state == "inactive" and not node._subs
    assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    assert node.lifecycle_state == "unconfigured"
    assert pipeline.closed and node._worker is None and not node._pubs
    assert gc.get_freeze_count() == 0  # and released: the old pipeline can be collected

    # and again: a second configure builds a fresh pipeline
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert len(factory.built) == 2
    node.shutdown()
    assert factory.built[-1].closed


def test_configure_fails_on_a_bad_table_path(ros, tmp_path):
    bad = tmp_path / "nowhere.gltab"
    node = make_node(ros, FakeFactory(), **{"table.path": str(bad), "output.diagnostics_period_s": 0.1})
    diags = ros.collect(DiagnosticArray, "/diagnostics")
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert node.lifecycle_state == "unconfigured" and node._worker is None
    assert str(bad) in node._last_error
    assert ros.wait_for(lambda: _status(diags) is not None and str(bad) in _status(diags).message)
    assert _status(diags).level == b"\x02"  # ERROR
    # fixing the parameter while unconfigured and configuring again works
    from rclpy.parameter import Parameter

    assert node.set_parameters([Parameter("table.path", value="")])[0].successful
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node._last_error == ""


def test_lifecycle_services(ros):
    """What `ros2 lifecycle set` and the launch file's autostart use: the node's ~/change_state service."""
    node = make_node(ros, FakeFactory())
    change = ros.tester.create_client(ChangeState, "/geoloc_node/change_state")
    get = ros.tester.create_client(GetState, "/geoloc_node/get_state")
    assert change.wait_for_service(timeout_sec=5.0) and get.wait_for_service(timeout_sec=5.0)

    def call(client, request):
        future = client.call_async(request)
        assert ros.wait_for(future.done, timeout=10.0)
        return future.result()

    for tid in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
        assert call(change, ChangeState.Request(transition=Transition(id=tid))).success
    assert call(get, GetState.Request()).current_state.label == "active"
    assert node.lifecycle_state == "active"


def test_configure_with_the_real_factory_names_the_missing_table(ros, tmp_path):
    """The product's own pipeline factory (no fake): a missing table fails configure, naming the file."""
    bad = tmp_path / "missing.gltab"
    node = make_node(ros, None, **{"table.path": str(bad)})
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert node.lifecycle_state == "unconfigured" and str(bad) in node._last_error
    node.trigger_shutdown()
    empty = make_node(ros, None)  # table.path unset
    assert empty.trigger_configure() == TransitionCallbackReturn.FAILURE and "table.path" in empty._last_error


def test_configure_refuses_a_table_of_another_encoder(ros, tmp_path):
    """The real Pipeline's fingerprint check, reached through on_configure."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipeline"))
    import fakes as pfakes  # tests/pipeline/fakes.py

    from geoloc_node.pipeline import Pipeline
    from geoloc_node.table import open_table

    world = pfakes.FakeWorld(seed=0)
    world.write_table(tmp_path / "t.gltab", half_size_m=50.0)

    def factory(core_cfg, node_cfg):
        enc = pfakes.FakeOracleEncoder(world, aerial_fingerprint="another-aerial-encoder")
        return Pipeline(core_cfg, enc, open_table(core_cfg.table.path))

    node = make_node(ros, factory, **{"table.path": str(tmp_path / "t.gltab")})
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert "aerial encoder" in node._last_error and node._worker is None
