"""Configuration of the runtime pipeline: one dataclass per component, documented defaults, one flat namespace.

Every field below is a parameter of the ROS node and a key of ``config/geoloc.yaml`` under a dotted name
``<section>.<field>`` (for example ``health.max_horizontal_std_m``). :meth:`GeolocConfig.from_flat` and
:meth:`GeolocConfig.to_flat` convert between the dataclasses and that flat form, so that the node, the YAML file and the
command line all name a parameter the same way. The comment above each field is its documentation (the node uses it as
the parameter description).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field

from .errors import GeolocError


class ConfigError(GeolocError, ValueError):
    """A configuration key is unknown or its value has the wrong type or range."""


@dataclass(frozen=True)
class HealthConfig:
    """GPS health monitor: when a NavSatFix can be trusted (HEALTHY), is doubtful (DEGRADED) or unusable (LOST)."""

    #: Horizontal standard deviation (m, from the fix covariance) above which the fix is DEGRADED.
    max_horizontal_std_m: float = 8.0
    #: Horizontal standard deviation (m) above which the fix is LOST (a covariance blow-up).
    lost_horizontal_std_m: float = 25.0
    #: No fix for this long (s of message time) means LOST. The effective timeout is the larger of this and
    #: ``timeout_periods`` times the median fix period, so that a 1 Hz receiver is not declared lost between fixes.
    fix_timeout_s: float = 0.6
    #: Timeout in units of the observed median fix period (see ``fix_timeout_s``).
    timeout_periods: float = 2.5
    #: Fixes may reach the pipeline later than the odometry and camera messages stamped at the same time (receiver
    #: and driver latency, a loaded computer). The timeout grows by the largest such lateness seen over the last 50
    #: fixes, at most this much (s), so that a late-but-alive GPS is not called an outage (an outage is then flagged
    #: that much later: keep it well under a second). 0 disables it.
    max_fix_latency_s: float = 0.3
    #: A fix whose covariance type is UNKNOWN (0) is DEGRADED when true (its accuracy cannot be checked).
    unknown_covariance_degrades: bool = True
    #: Frozen payload: the same latitude/longitude repeated for at least this long (s) ...
    frozen_s: float = 0.5
    #: ... while odometry says the vehicle moved at least this far (m) means LOST (a stuck driver or receiver).
    frozen_min_motion_m: float = 1.0
    #: Jump: a fix that disagrees with odometry dead-reckoning from the last trusted fix by more than
    #: ``jump_min_m + jump_sigma * combined std`` (m) is LOST (multipath, spoofing, a receiver reset).
    jump_min_m: float = 12.0
    #: See ``jump_min_m``.
    jump_sigma: float = 4.0
    #: Odometry drift allowance for the jump test, as a fraction of the distance driven since the last trusted fix.
    jump_odometry_drift: float = 0.05
    #: Without odometry, a fix implying a speed above this (m/s) is a jump.
    max_speed_mps: float = 70.0
    #: After a jump, fixes that stay self-consistent for this long (s) are accepted again even if they disagree with
    #: odometry (the receiver was right and odometry drifted).
    jump_reacquire_s: float = 10.0
    #: Hysteresis: GPS goes back to HEALTHY only after this long (s) of continuously good fixes ...
    recover_s: float = 3.0
    #: ... and at least this many good fixes.
    recover_min_fixes: int = 3


@dataclass(frozen=True)
class TrackingConfig:
    """Particle filter in the local ENU frame: state (east, north, yaw); odometry predicts, vision and GPS update."""

    #: Number of particles.
    n_particles: int = 1000
    #: Odometry noise: standard deviation of the distance driven, as a fraction of it.
    odom_distance_noise: float = 0.03
    #: Odometry noise: lateral slip (m per m driven).
    odom_lateral_noise: float = 0.02
    #: Odometry noise: yaw (rad per rad turned) ...
    odom_yaw_noise: float = 0.03
    #: ... plus a heading random walk (rad per sqrt(s)).
    yaw_random_walk: float = 0.01
    #: Prior standard deviation of the odometry scale factor (a particle state, learned while GPS is good) ...
    odom_scale_std: float = 0.03
    #: ... and its random walk (per sqrt(s)).
    odom_scale_random_walk: float = 0.0005
    #: Prior standard deviation of the odometry yaw-rate bias (rad/s; a particle state, learned while GPS is good) ...
    yaw_rate_bias_std: float = 0.005
    #: ... and its random walk (rad/s per sqrt(s)).
    yaw_rate_bias_random_walk: float = 0.00005
    #: Position random walk (m per sqrt(s)), applied on every prediction (also without odometry).
    position_random_walk: float = 0.15
    #: Position random walk (m per sqrt(s)) used instead when there is no odometry at all.
    no_odometry_random_walk: float = 3.0
    #: Hamming temperature as a fraction of the code length: tile likelihood = exp(-(d - d_min) / (fraction * bits)).
    #: With ``visual_outlier_prob`` tuned on the calibration worlds (3 filter seeds; 0.03 and 0.2 before): nominal
    #: outage median 2.8 -> 1.5 m, p95 5.0 -> 2.8 m; 5 % odometry error p95 13.2 -> 3.5 m; old table p95 11.8 ->
    #: 6.3 m; no new hazard. A lower floor alone (0.05) was as accurate but worse on the old table (p95 18 m).
    hamming_temperature: float = 0.04
    #: Spatial kernel of a tile's likelihood, as a fraction of the table stride (a tile covers its neighbourhood).
    tile_kernel_stride: float = 0.6
    #: Probability that a visual measurement is an outlier (a floor on every particle's likelihood; see
    #: ``hamming_temperature``). Too high a floor lets a cloud slide a few metres off on biased odometry while every
    #: frame is still used, until its frames stop agreeing and are gated.
    visual_outlier_prob: float = 0.1
    #: Search window around the particle cloud: at least this radius (m) ...
    window_min_radius_m: float = 40.0
    #: ... and at most this radius (m); particles farther than this from the mean get only the outlier floor.
    window_max_radius_m: float = 250.0
    #: Resample when the effective sample size falls below this fraction of the particles.
    resample_ess_fraction: float = 0.5
    #: Minimum GPS standard deviation (m) used in the GPS update (receivers often under-report).
    gps_min_std_m: float = 1.0
    #: Tiles in the global top-k search used for a cold start or a re-initialisation.
    global_topk: int = 10
    #: Fraction of particles placed around the global top-k at (re)initialisation; the rest spread over the table.
    global_init_fraction: float = 0.95
    #: Divergence check period (s): a global top-k search is compared with the filter this often (visual fallback).
    divergence_check_s: float = 2.0
    #: Divergence: the global best tile beats the best tile near the filter by at least this fraction of the bits ...
    divergence_margin: float = 0.03
    #: ... and lies farther than this (m) from the filter ...
    divergence_distance_m: float = 60.0
    #: ... with the global top-k forming one cluster that holds at least this share of their weight ...
    divergence_inlier_weight: float = 0.7
    #: ... on this many consecutive checks (the cluster moving as the filter moves): the filter restarts there. 0: off
    #: (the default: the integrity monitor's track check restarts a filter that is elsewhere, on the evidence of a
    #: whole track instead of single frames, which restarted it at wrong places on worlds it had not seen).
    divergence_checks: int = 0
    #: Confidence = exp(-std / confidence_scale_m), with std the square root of the largest covariance eigenvalue.
    confidence_scale_m: float = 15.0
    #: Random seed of the filter (replays are deterministic).
    seed: int = 0


@dataclass(frozen=True)
class IntegrityConfig:
    """The integrity monitor: when an estimate is trustworthy, and its protection level (docs/pipeline.md#integrity)."""

    #: Valid ranges where they are not [0, large] (also the ROS parameter descriptors' ranges).
    RANGES: typing.ClassVar[dict] = {"integrity_risk": (1e-12, 0.5), "track_recent_margin_bits": (-1e3, 1e3),
                                     "track_margin_bits": (-1e3, 1e3), "track_recent_regain_bits": (-1e3, 1e3)}

    def __post_init__(self):
        for name, (lo, hi) in self.RANGES.items():
            v = getattr(self, name)
            if not (lo <= v <= hi):
                raise ConfigError(f"integrity.{name}={v!r} is outside [{lo}, {hi}]")

    #: Integrity risk per estimate: the probability allowed for the error to exceed the protection level.
    integrity_risk: float = 1.0e-3
    #: Alert limit (m): an estimate whose protection level is larger is not trustworthy.
    alert_limit_m: float = 25.0
    #: Published covariance = covariance_scale^2 x the particle covariance ... (with the tracking of
    #: ``tracking.hamming_temperature``; camera and dead-reckoned estimates, 3 filter seeds): 0.8 and 0.7 m met the
    #: targets on the calibration worlds (95 % ellipse 0.983 nominal / 0.930 odometry error, NEES 1.67 / 2.20) but
    #: were over-confident on the evaluation worlds (0.84 / 0.86, NEES 3.5 / 3.1): the model's error differs from
    #: world to world by more than the particle spread shows. 1.2 and 1.0 m keep at least 0.946 inside on both sets
    #: (NEES 0.77-1.62: cautious); never over-confident is the side to err on.
    covariance_scale: float = 1.2
    #: ... + covariance_floor_m^2 (m^2) on each axis (tile quantisation and the model's own error).
    covariance_floor_m: float = 1.0
    #: A trusted GPS fix anchors the dead-reckoned estimate for this long (s) without visual confirmation.
    gps_anchor_s: float = 10.0
    #: Visual evidence: running mean over about this many frames of each frame's log Bayes factor (agreement of the
    #: frame's matches with the filter's prediction against a random tile of the window) ...
    evidence_frames: float = 3.0
    #: ... which must be at least this for the camera to confirm the position.
    evidence_min: float = 1.0
    #: A frame whose log Bayes factor is below this does not move a filter whose estimate was trustworthy less than
    #: ``gate_hold_s`` ago (an unreadable frame: the position dead-reckons on odometry instead) ...
    frame_gate: float = 0.0
    #: ... (see ``frame_gate``).
    gate_hold_s: float = 60.0
    #: Visual confirmation older than this (s) no longer counts (no frame, or frames outside the table).
    evidence_max_age_s: float = 10.0
    #: Track check (geoloc_node.track_match): the frames of the last this-many metres of driving ...
    track_length_m: float = 60.0
    #: ... kept at least this far apart (m), at most ``track_max_frames`` of them ...
    track_spacing_m: float = 2.0
    #: ... (see ``track_spacing_m``).
    track_max_frames: int = 30
    #: ... are scored as a track at every position within this radius (m) of the filter, every ``track_check_s``.
    track_radius_m: float = 1000.0
    #: See ``track_radius_m`` (0: at every processed frame).
    track_check_s: float = 0.0
    #: Camera trust needs a track at least this long (m): a trajectory that matches, not one place ...
    track_min_length_m: float = 30.0
    #: ... whose score at the filter's place beats every place farther than the alert limit by this much (bits per
    #: frame) ...
    track_margin_bits: float = 1.0
    #: ... and stands out from the scores of all places by this robust z (chance: about 0); and the newest
    #: ``track_recent_frames`` frames alone must not prefer a place farther than the alert limit by more than
    #: ``track_recent_margin_bits`` bits per frame (negative: some slack): a kidnapped vehicle shows there first.
    track_min_z: float = 4.0
    #: See ``track_min_z``.
    track_recent_frames: int = 3
    #: See ``track_min_z``.
    track_recent_margin_bits: float = -3.0
    #: ... unless they still stand out at the filter's place by this robust z (a place that fits the newest frames
    #: well is not contradicted because a far one fits them a little better: aliasing). Calibration worlds, 3
    #: filter seeds: such checks were 1.3 of the 8.7 % false alarms of right estimates; the first alarm after a
    #: 500 m teleport came as soon as before (it is the newest frame that shows it); nominal availability 0.955
    #: -> 0.973, cold start 0.80 -> 0.82, kidnapped 0.66 -> 0.70, no hazard; the demo drive 0.945 -> 1.0.
    track_recent_max_z: float = 4.0
    #: The newest frame alone must stand out at the filter's place by this robust z (good frames: 1 % below 3) ...
    track_newest_min_z: float = 2.5
    #: The estimate made with a frame that stands out at the filter's place by less than this robust z is not
    #: trusted (until a frame does), though the track is not contradicted: the first frames after a vehicle is
    #: moved can still fit the old place a little (newest z 2.6-2.7 on the two frames after a teleport while
    #: driving, calibration 500 m and bench_global 1 km; 4 hazardous estimates each), and a new frame must stand out
    #: this much to restore trust anyway (``track_regain_min_z``).
    track_newest_trust_z: float = 3.0
    #: ... (the newest frames: those within this many metres of driving of the newest, and at least
    #: ``track_recent_frames``: the same stretch of road at any frame rate) ...
    track_recent_m: float = 12.0
    #: ... and after a check whose newest frames were at odds with the place, only frames taken after it confirm the
    #: place again: this much driving (m) of them. 10 m alone had a hazard on the calibration worlds (4 estimates
    #: 498 m off: a 500 m teleport while driving, trusted again just before it, as ``track_newest_trust_z`` now
    #: prevents); with that rule, calibration nominal availability 0.937 at 15 m -> 0.953 at 10 m, kidnapped 0.69 ->
    #: 0.71, no hazard (3 filter seeds). Earlier, before the frame gate and track rules of today, 10 m of another
    #: world's frames had confirmed a place 21 m off on an evaluation drive; that drive has none now ...
    track_regain_m: float = 10.0
    #: ... or frames of this many seconds (s; a vehicle standing still sees no new road) ...
    track_regain_s: float = 3.0
    #: A vehicle carried elsewhere (a kidnapping, a ferry, a tow) shows no odometry; standing, it adds no track, and
    #: driving on, its first frames can still fit the old place: only its view jumps. Two frames whose codes differ
    #: in more than this share of their bits, plus ``view_change_per_m`` per metre of odometry between them, with at
    #: most ``view_change_max_turn_deg`` of turn, withdraw trust, and only ``track_regain_m`` of driving may restore
    #: it (not ``track_regain_s`` of standing). Calibration drives (2,505 pairs, turns up to 2 degrees): at most
    #: 11.3 % standing, and at most 7.4 % above 8 % per metre when moving; evaluation 2 km drives standing: at most
    #: 14 of 256 bits. Caught: a 1 km teleport of a standing vehicle (61, 62 and 143 bits) and of one driving at
    #: 10 m/s (44 % over 2.2 m, while the first two frames after it still fit the old place at newest z 2.7 and
    #: 2.6): bench_global --kidnap-m 1000 --drives 10, 192 hazardous estimates before, none after.
    view_change_max_frac: float = 0.125
    #: See ``view_change_max_frac``.
    view_change_per_m: float = 0.08
    #: See ``view_change_max_frac``.
    view_change_max_turn_deg: float = 2.0
    #: See ``view_change_max_frac``: and more than this many times the median change of the last 20 pairs (codes
    #: that flicker from frame to frame, a noisy encoder or camera, change much at every frame: the test encoder
    #: that flips 10 % of the bits of each code, 18 % per pair, made the rule fire at every slow frame without it).
    #: Drive 6 of bench_global --kidnap-m 1000: 44 %, about 5 times the usual.
    view_change_noise_factor: float = 2.0
    #: ... which on their own prefer the filter's place by at least this much (bits per frame) ...
    track_recent_regain_bits: float = 1.0
    #: ... and stand out from chance by this robust z.
    track_regain_min_z: float = 3.0
    #: A converged filter whose track is not confirmed for this long (s), on frames that match some place distinctly,
    #: restarts from the whole table (a cold start at every heading: a kidnapped vehicle may face another way) ...
    relocalize_after_s: float = 5.0
    #: ... or this long (s) while the filter has not converged (its protection level above the alert limit), and then
    #: only when the best track stands out by ``relocalize_unconverged_extra_z`` more ...
    relocalize_unconverged_s: float = 30.0
    #: ... (see ``relocalize_unconverged_s``).
    relocalize_unconverged_extra_z: float = 1.5
    #: ... "distinctly": the best track anywhere stands out by this robust z (unreadable frames: up to 4.7, readable
    #: ones mostly above 5 in the calibration drives); unreadable frames never restart the filter.
    relocalize_min_z: float = 5.0
    #: Lost (in fallback, not trustworthy): the frames of the last ``track_length_m`` of driving, one per this many
    #: metres, are encoded at every heading and scored against the whole table (geoloc_node.relocalize) ...
    relocalize_spacing_m: float = 4.0
    #: ... for this many hypotheses of the vehicle's heading (0: off) ...
    relocalize_headings: int = 16
    #: ... every this many seconds, once they cover this much driving (m) ...
    relocalize_check_s: float = 1.0
    #: See ``relocalize_check_s``.
    relocalize_min_track_m: float = 40.0
    #: ... and the filter restarts at the best place and heading when it beats every place more than twice the alert
    #: limit away by this much (bits per frame) ...
    relocalize_margin_bits: float = 8.0
    #: ... and stands out from all places and headings by this robust z, and the filter is not already there.
    relocalize_track_z: float = 6.5
    #: A converged filter (protection level within the alert limit) is restarted by the relocalizer only after this
    #: long (s) without a trustworthy estimate; an unconverged one at once.
    relocalize_converged_after_s: float = 20.0
    #: ... or at once when the filter's own track check corroborates the relocalizer: at the filter's heading the
    #: track fits a place within the alert limit of the relocalizer's better than the filter's place, by at least
    #: this much (bits per frame; 0: never at once). Calibration, 3 filter seeds: kidnapped availability 0.52 ->
    #: 0.67; the old-table drives, where a right filter must not be thrown away, unchanged.
    relocalize_corroboration_bits: float = 8.0
    #: The relocalizer scores the whole table: on tables of more tiles than this (about 30 km^2 at a 10 m stride)
    #: it is off (each kept frame holds a grid of the table per heading: 1.2 MB each at this size).
    relocalize_max_tiles: int = 300_000
    #: Without CameraInfo the camera cannot be checked against the model: estimates from the camera are then never
    #: trustworthy.
    require_camera_info: bool = True


@dataclass(frozen=True)
class PipelineConfig:
    """The pipeline around the steps: frame rate, outputs, time handling."""

    #: Maximum rate (Hz of message time) at which camera frames are encoded; frames in between are skipped. 5 Hz, not
    #: 2: more frames keep the particle cloud on the road (calibration worlds, 3 filter seeds: outage median 2.8 m
    #: against 4.8 m, the worst seed 4.8 m against 8.9 m) and a kidnapped vehicle is seen sooner; about 10 ms of CPU
    #: per frame here, less on a Jetson's GPU.
    max_frame_rate_hz: float = 5.0
    #: Run visual updates also while GPS is HEALTHY (costs CPU; useful to evaluate retrieval).
    visual_when_healthy: bool = False
    #: Panorama models want north-aligned panoramas: a frame is rolled by the filter's heading when its standard
    #: deviation is below this (degrees) ...
    heading_known_std_deg: float = 20.0
    #: ... else encoded at this many headings (hypotheses, each scored against the particles of that heading).
    heading_hypotheses: int = 8
    #: Also compute the paper's single-frame estimate (global top-5 mean) for every processed frame (evaluation only).
    single_frame_baseline: bool = False
    #: Tiles reported in each estimate (markers of the best matches).
    report_topk: int = 5
    #: Rate (Hz of message time) of odometry-driven estimates while the fallback is active.
    odometry_output_rate_hz: float = 10.0
    #: A stamp earlier than its own stream's last one, or later than every stream's, by more than this (s) is a
    #: candidate time jump (a looping bag, a restarted clock) ...
    time_jump_reset_s: float = 2.0
    #: ... and the pipeline resets once this many consecutive messages agree on it; fewer are dropped as single stale
    #: or future stamps. A frame or fix ``time_jump_reset_s`` behind the newest stamp of the other streams is stale:
    #: dropped without a reset.
    time_jump_confirm_messages: int = 3
    #: Expected header.frame_id of the odometry ('': the frame of the first message); messages in another frame (a
    #: second source on the topic) are refused and counted.
    odometry_frame_id: str = ""
    #: Odometry faster than this (m/s, its twist or its position steps) is refused and counted as an odometry fault.
    odometry_max_speed_mps: float = 70.0
    #: Odometry turning faster than this (rad/s) is refused.
    odometry_max_yaw_rate_rps: float = 6.0
    #: After refused position steps, this many consecutive odometry messages that agree with each other are a
    #: restarted odometry source: followed from there (the filter's odometry reference restarts).
    odometry_reanchor_messages: int = 5


@dataclass(frozen=True)
class OutputConfig:
    """What the node publishes and a replay writes (the output session): policy, frames, variances, markers."""

    #: 'fallback_only': ~/fix and ~/pose only while the fallback is engaged (GPS unhealthy); 'always': every estimate.
    publish_policy: str = "fallback_only"
    #: header.frame_id of ~/fix (the frame whose position is estimated; navsat_transform uses it for the sensor
    #: offset).
    fix_frame_id: str = "base_link"
    #: Frame of ~/pose and ~/markers: the ENU tangent plane at the region table's origin (x east, y north, metres).
    map_frame_id: str = "map"
    #: Variance (m^2) given to the altitude of ~/fix and z of ~/pose: the fallback estimates only east/north; the
    #: altitude is the last GPS one.
    altitude_variance_m2: float = 1.0e4
    #: Variance given to pose components that are not estimated (roll, pitch, and yaw when the estimate has none):
    #: large, never -1, so robot_localization accepts it.
    unknown_variance: float = 1.0e6
    #: Points kept in the GPS and estimate trails of ~/markers.
    trail_length: int = 300
    #: Rate (Hz of message time) of ~/markers (top-k tiles, ellipse, protection level, trails of the latest
    #: estimate): building a MarkerArray costs about as much CPU as encoding a frame, and RViz needs no more.
    markers_rate_hz: float = 2.0
    #: Period (s) of /diagnostics: of message time in a replay; the node publishes on a timer of this period in every
    #: lifecycle state (read at start-up).
    diagnostics_period_s: float = 1.0

    #: Valid ranges (also the ROS parameter descriptors' ranges).
    RANGES: typing.ClassVar[dict] = {"altitude_variance_m2": (0.0, 1e12), "unknown_variance": (1.0, 1e12),
                                     "trail_length": (2, 100_000), "markers_rate_hz": (0.1, 50.0),
                                     "diagnostics_period_s": (0.05, 60.0)}

    def __post_init__(self):
        if self.publish_policy not in PUBLISH_POLICIES:
            raise ConfigError(f"output.publish_policy={self.publish_policy!r}: expected one of "
                              f"{', '.join(PUBLISH_POLICIES)}")
        for name in ("fix_frame_id", "map_frame_id"):
            if not getattr(self, name):
                raise ConfigError(f"output.{name} must not be empty")
        for name, (lo, hi) in self.RANGES.items():
            v = getattr(self, name)
            if not (lo <= v <= hi):
                raise ConfigError(f"output.{name}={v!r} is outside [{lo}, {hi}]")


#: Values of ``output.publish_policy``.
PUBLISH_POLICIES = ("fallback_only", "always")
#: Encoder backends (the one list: ``geoloc_node.encoders`` and every command line take these names) ...
ENCODER_BACKENDS = ("auto", "tensorrt", "onnxruntime", "torch")
#: ... and the other spellings accepted for them (the node's YAML has long said 'onnx').
BACKEND_ALIASES = {"onnx": "onnxruntime"}


def backend_name(name: str) -> str:
    """A backend name or alias -> its name in :data:`ENCODER_BACKENDS` (unknown names are returned unchanged)."""
    return BACKEND_ALIASES.get(name, name)


@dataclass(frozen=True)
class ModelConfig:
    """The camera encoder."""

    #: Path of the ONNX model (or TensorRT engine); empty: the model shipped in geoloc_node/models.
    path: str = ""
    #: Backend: auto (TensorRT when available, else ONNX Runtime), tensorrt, onnxruntime (or 'onnx') or torch.
    backend: str = "auto"

    def __post_init__(self):
        if self.backend_name not in ENCODER_BACKENDS:
            raise ConfigError(f"model.backend={self.backend!r}: expected one of {', '.join(ENCODER_BACKENDS)}")

    @property
    def backend_name(self) -> str:
        """The backend as the encoder loader names it ('onnx' is accepted for ONNX Runtime)."""
        return backend_name(self.backend)


@dataclass(frozen=True)
class TableConfig:
    """The region table of geo-tagged aerial tiles."""

    #: Path of the region table (.gltab).
    path: str = ""
    #: Verify the section checksums when opening (slower on very large tables).
    verify: bool = True


@dataclass(frozen=True)
class GeolocConfig:
    """All parameters, one section per component."""

    health: HealthConfig = field(default_factory=HealthConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    integrity: IntegrityConfig = field(default_factory=IntegrityConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    table: TableConfig = field(default_factory=TableConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    # -- flat dotted names -----------------------------------------------------------------------------------
    def to_flat(self) -> dict:
        """``{"health.max_horizontal_std_m": 8.0, ...}``: every parameter under its dotted name."""
        out = {}
        for sec in dataclasses.fields(self):
            for f in dataclasses.fields(getattr(self, sec.name)):
                out[f"{sec.name}.{f.name}"] = getattr(getattr(self, sec.name), f.name)
        return out

    @classmethod
    def from_flat(cls, flat: dict, base: GeolocConfig | None = None) -> GeolocConfig:
        """Build a config from dotted names (unknown keys raise :class:`ConfigError`); missing keys keep ``base``'s
        (default) values. Values are converted to the field's type (int, float, bool, str) and checked."""
        base = base or cls()
        sections = {sec.name: {} for sec in dataclasses.fields(cls)}
        known = dict(parameter_types())
        for key, value in flat.items():
            if key not in known:
                raise ConfigError(f"unknown parameter {key!r}; known: {', '.join(sorted(known))}")
            sec, name = key.split(".", 1)
            sections[sec][name] = _convert(key, value, known[key])
        return cls(**{sec: dataclasses.replace(getattr(base, sec), **vals) for sec, vals in sections.items()})

    @classmethod
    def from_yaml(cls, path) -> GeolocConfig:
        """Read ``config/geoloc.yaml``-style files: either flat dotted keys, or nested sections, optionally under
        ``geoloc_node: ros__parameters:`` as ROS 2 parameter files have them."""
        import yaml  # pyyaml comes with rosbags

        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
        for key in ("geoloc_node", "/**"):
            if isinstance(data, dict) and key in data:
                data = data[key]
        if isinstance(data, dict) and "ros__parameters" in data:
            data = data["ros__parameters"]
        # The node's own settings (topics, QoS, threads: no section) share the file; a typo inside a section is
        # still an error.
        return cls.from_flat({k: v for k, v in _flatten(data).items() if "." in k})


def parameter_types() -> list[tuple[str, type]]:
    """``[(dotted name, python type)]`` of every parameter, in declaration order."""
    out = []
    hints_cache = {}
    for sec in dataclasses.fields(GeolocConfig):
        sec_cls = sec.default_factory  # type: ignore[misc]
        hints = hints_cache.setdefault(sec_cls, typing.get_type_hints(sec_cls))
        for f in dataclasses.fields(sec_cls):
            out.append((f"{sec.name}.{f.name}", hints[f.name]))
    return out


def parameter_docs() -> dict[str, str]:
    """``{dotted name: description}`` from the ``#:`` comments above each field (for ROS parameter descriptors)."""
    import inspect

    docs = {}
    for sec in dataclasses.fields(GeolocConfig):
        sec_cls = sec.default_factory  # type: ignore[misc]
        lines = inspect.getsource(sec_cls).splitlines()
        pending: list[str] = []
        for line in lines:
            s = line.strip()
            if s.startswith("#:"):
                pending.append(s[2:].strip())
            elif ":" in s and not s.startswith(("#", '"')) and pending:
                docs[f"{sec.name}.{s.split(':', 1)[0].strip()}"] = " ".join(pending)
                pending = []
            elif not s.startswith("#"):
                pending = []
    return docs


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _convert(key: str, value, typ: type):
    try:
        if typ is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            if isinstance(value, (bool, int)):
                return bool(value)
            raise ValueError(value)
        if typ is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if typ is float:
            if isinstance(value, bool):
                raise ValueError(value)
            v = float(value)
            if math.isnan(v):
                raise ValueError(value)
            return v
        if typ is str:
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"parameter {key!r}: {value!r} is not a valid {typ.__name__}") from None
    raise ConfigError(f"parameter {key!r}: unsupported type {typ}")  # pragma: no cover
