"""A live session, as a user runs the product: a scene streamed over DDS into the node, queries
sent to its service while it maps, answers scored against ground truth.

1. The scene (``core.synth``: ``'pybullet'`` photo-textured tabletop by default) is rendered into a
   rosbag2 with RealSense-style topics (``bag.writer``).
2. ``n3f_node`` starts as its own process with the shipped ``config/n3f.yaml`` (its teacher: the
   real DINOv2 the set-up installs, unless ``params`` say otherwise) and remaps onto the bag topics.
3. ``n3f play`` replays the bag over DDS once the node subscribes.
4. From the first ``feature_cloud`` on, every ``query_period`` seconds, every object is queried
   through ``~/query`` at the point a user would click (the top centre of its true surface); the
   answer's IoU against ground truth is ``scoring.answer_iou`` (answer vs the rest of the queried
   cloud, returned as the 'remove' edit). Rounds go on after the stream until the mean IoU
   reaches ``target_iou`` or ``max_wait`` seconds pass.
5. A last round asks for the 2D masks on the node's latest image; the map is saved through
   ``~/save_map``.

Times are seconds since the first image reached this process (a subscriber next to the node).
``run_live`` is what ``n3f bench latency`` and ``n3f demo`` run; the demo then writes pictures.
"""
from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from n3f_ros.bench import live_defaults
from n3f_ros.bench.node_process import NodeExited, NodeProcess
from n3f_ros.bench.scoring import answer_iou, mask_iou, object_seed_points

#: the IoU levels whose first time is reported (SPEC §5: time to a right answer)
IOU_LEVELS = (0.5, 0.75)


class LiveError(RuntimeError):
    """The session failed (node died, no answer, player failed); the message says why."""


@dataclass
class LiveSettings:
    """What to stream and how to query (see the module docstring)."""

    scene: str = 'pybullet'          # core.synth scene source
    seed: int = 0
    frames: int = live_defaults.FRAMES
    width: int = live_defaults.SIZE[0]
    height: int = live_defaults.SIZE[1]
    fps: float = live_defaults.FPS   # stream rate: frames / fps seconds of stream
    depth: bool = True               # RGB-D (False: RGB-only, keyframe depth by stereo)
    params: dict = field(default_factory=dict)   # node -p overrides
    query_period: float = live_defaults.QUERY_PERIOD   # seconds between query rounds
    max_wait: float = live_defaults.MAX_WAIT           # seconds of rounds after the stream ended
    target_iou: float = 0.75         # stop once a round's mean IoU reaches it (after the stream)
    masks: bool = True               # a last round with 2D masks
    save_map: bool = True
    namespace: str = '/n3f_live'
    out: str = 'live_out'


@dataclass
class LiveArtifacts:
    """What the demo draws, not part of the JSON: the last feature_cloud message, the final masks
    (id -> (H, W) bool), the last frame played (the node's latest image), the sequence and its
    ground truth."""

    cloud_msg: object = None
    masks: dict = field(default_factory=dict)
    last_frame: object = None
    seq: object = None
    gt: object = None


@dataclass
class LiveResult:
    settings: dict
    teacher: dict = field(default_factory=dict)
    objects: dict = field(default_factory=dict)        # id -> {'name', 'points'}
    rounds: list = field(default_factory=list)         # [{'t', 'streaming', 'iou': {id: v}, 'mean', ...}]
    final: dict = field(default_factory=dict)          # id -> {'iou', 'points', 'mask_iou', 'feature_source', ...}
    times: dict = field(default_factory=dict)          # node_ready, first_cloud, stream_end, iou_0.5, iou_0.75
    counts: dict = field(default_factory=dict)         # frames sent / received / integrated / dropped ...
    rates: dict = field(default_factory=dict)          # frames/s, steps/s
    files: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


def _diag(msg) -> dict:
    return {kv.key: kv.value for st in msg.status for kv in st.values}


def _num(v, default=0.0) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return default


class _Listener:
    """This process's view of the node: diagnostics, the feature cloud, the first image's arrival."""

    def __init__(self, node, ns: str, image_topic: str):
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image, PointCloud2
        self.lock = threading.Lock()
        self.diag: dict = {}
        self.cloud = None
        self.t_first_image = self.t_first_cloud = None
        node.create_subscription(DiagnosticArray, f'{ns}/diagnostics', self._on_diag, 10)
        node.create_subscription(PointCloud2, f'{ns}/feature_cloud', self._on_cloud, 1)
        node.create_subscription(Image, image_topic, self._on_image, qos_profile_sensor_data)

    def _on_diag(self, msg):
        with self.lock:
            self.diag.update(_diag(msg))

    def _on_cloud(self, msg):
        with self.lock:
            self.cloud = msg
            if self.t_first_cloud is None and msg.width > 0:
                self.t_first_cloud = time.monotonic()

    def _on_image(self, msg):
        if self.t_first_image is None:
            self.t_first_image = time.monotonic()


def _round(client, seeds: dict, gt, t: float, streaming: bool, with_mask: bool = False) -> tuple[dict, dict]:
    """One query per object; returns (round summary, answers by id)."""
    from n3f_ros.client import QueryRejected
    ious, answers, reasons = {}, {}, {}
    t0 = time.monotonic()
    for label, p in seeds.items():
        try:
            ans = client.query_point(p, with_edit=True, with_mask=with_mask)
        except QueryRejected as e:
            ious[label], reasons[label] = 0.0, str(e)
            continue
        answers[label] = ans
        ious[label] = answer_iou(ans.xyz, ans.edit_xyz, gt, label) if len(ans) else 0.0
        if ans.empty:
            reasons[label] = ans.message
    summary = {'t': round(t, 2), 'streaming': streaming, 'iou': {k: round(v, 4) for k, v in ious.items()},
               'mean': round(float(np.mean(list(ious.values()))) if ious else 0.0, 4),
               'latency_s': round((time.monotonic() - t0) / max(len(seeds), 1), 3),
               'sources': {k: a.feature_source for k, a in answers.items()}, 'empty': reasons}
    return summary, answers


def run_live(s: LiveSettings, log=print) -> tuple[LiveResult, LiveArtifacts]:
    """Run one live session (see the module docstring). Raises LiveError with the reason (and the
    node's log tail) when the node dies or does not answer."""
    import rclpy

    from n3f_ros.bag.writer import BagOptions, write_synthetic_bag
    from n3f_ros.client import N3FClient, QueryRejected
    from n3f_ros.core.synth import make_sequence
    out = Path(s.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    res, art = LiveResult(settings=asdict(s)), LiveArtifacts()
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    os.environ.setdefault('ROS_DOMAIN_ID', str(random.Random(os.getpid()).randint(1, 100)))

    log(f'[live] rendering the {s.scene} scene (seed {s.seed}): {s.frames} frames at {s.width}x{s.height}')
    seq = make_sequence(s.seed, s.frames, s.width, s.height, fps=s.fps, scene=s.scene)
    gt = seq.gt_points(voxel=0.005)
    art.seq, art.gt = seq, gt
    seeds = object_seed_points(gt, [o.instance_id for o in seq.scene.objects])
    res.objects = {int(o.instance_id): {'name': o.name, 'points': int(np.sum(gt.labels == o.instance_id))}
                   for o in seq.scene.objects if o.instance_id in seeds}
    bag = out / 'bag'
    if bag.exists():
        import shutil
        shutil.rmtree(bag)
    opts = BagOptions(depth=s.depth)
    write_synthetic_bag(seq, bag, opts)
    topics = opts.topics
    remaps = {'image': topics.image, 'camera_info': topics.camera_info, 'depth': topics.depth, 'pose': topics.pose}
    params = {'world_frame': opts.world_frame, **s.params}
    log(f'[live] starting n3f_node (shipped config{", " + str(s.params) if s.params else ""}); log: {out / "node.log"}')
    node = NodeProcess(params, s.namespace, out / 'node.log', remaps=remaps)
    player = None
    rclpy.init(args=[])              # not sys.argv: the command line is ours, not ROS arguments
    try:
        res.times['node_ready'] = round(node.wait_ready(), 2)
        log(f"[live] node ready after {res.times['node_ready']:.1f} s")
        from rclpy.executors import MultiThreadedExecutor
        helper = rclpy.create_node('n3f_live_client')
        listener = _Listener(helper, s.namespace, topics.image)
        client = N3FClient(helper, namespace=s.namespace, timeout=180.0, spin=False, with_mask=False)
        ex = MultiThreadedExecutor(num_threads=3)
        ex.add_node(helper)
        spin = threading.Thread(target=ex.spin, daemon=True)
        spin.start()
        # play once the node subscribes to every input (a camera_info missed at the start drops images)
        # (and the image topic for this process's listener too: the first frame's time is its arrival here)
        wait = [f'{t}=2' if t == topics.image else t for t in remaps.values()]
        player = subprocess.Popen([sys.executable, '-m', 'n3f_ros.cli.main', 'play', str(bag), '--quiet',
                                   '--wait-topic', *wait, '--wait-subscribers', '120'],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        _session(s, res, node, player, listener, client, seeds, gt, log)
        if s.masks:
            _final_round(res, art, client, seeds, gt, seq, log)
        if not res.rounds or all(not r['iou'] or max(r['iou'].values()) == 0 for r in res.rounds):
            raise LiveError('no query was ever answered with the object (the map stayed empty?)\n'
                            f'--- node log tail ---\n{node.tail()}')
        if s.save_map:
            path = client.save_map(str(out / 'map.pt'))
            res.files['map'] = os.path.relpath(path, out)
            log(f'[live] map saved through ~/save_map: {path}')
        with listener.lock:
            art.cloud_msg = listener.cloud
            diag = dict(listener.diag)
        _counts(res, diag, s)
        res.teacher = {k: diag.get(k, '') for k in ('teacher', 'teacher_source', 'teacher_weights')}
        client.close()
        ex.shutdown()
        helper.destroy_node()
    except NodeExited as e:
        raise LiveError(str(e)) from e
    except (TimeoutError, QueryRejected) as e:
        raise LiveError(f'{e}\n--- node log tail ---\n{node.tail()}') from e
    finally:
        if player is not None and player.poll() is None:
            player.kill()
        node.stop()
        if rclpy.ok():
            rclpy.shutdown()
    return res, art


def _session(s, res, node, player, listener, client, seeds, gt, log) -> None:
    t_stream_end = None
    last_round = -np.inf
    reached = {}
    while True:
        node.check_alive()
        now = time.monotonic()
        t0 = listener.t_first_image
        if player is not None and t_stream_end is None and player.poll() is not None:
            if player.returncode != 0:
                raise LiveError(f'the bag player failed (exit {player.returncode}):\n{player.stdout.read()}')
            t_stream_end = now
            res.times['stream_end'] = round(now - (t0 or now), 2)
            log(f"[live] stream ended after {res.times['stream_end']:.1f} s")
        if listener.t_first_cloud is not None and t0 is not None and 'first_cloud' not in res.times:
            res.times['first_cloud'] = round(listener.t_first_cloud - t0, 2)
            log(f"[live] first feature_cloud {res.times['first_cloud']:.1f} s after the first frame")
        if listener.t_first_cloud is not None and now - last_round >= s.query_period:
            last_round = now
            r, _ = _round(client, seeds, gt, time.monotonic() - t0, t_stream_end is None)
            res.rounds.append(r)
            for level in IOU_LEVELS:
                if r['mean'] >= level and level not in reached:
                    reached[level] = r['t']
                    res.times[f'iou_{level}'] = r['t']
            with listener.lock:
                d = dict(listener.diag)
            log(f"[live] t={r['t']:6.1f} s  mean IoU {r['mean']:.2f}  "
                f"({'streaming' if r['streaming'] else 'after the stream'}; {int(_num(d.get('keyframes')))} "
                f"keyframes, {int(_num(d.get('train_steps')))} steps; per object "
                + ' '.join(f'{k}:{v:.2f}' for k, v in r['iou'].items()) + ')')
            if t_stream_end is not None and r['mean'] >= s.target_iou:
                return
        if t_stream_end is not None and now - t_stream_end > s.max_wait:
            log(f'[live] stopping: {s.max_wait:g} s after the stream without mean IoU {s.target_iou}')
            return
        if listener.t_first_cloud is None and t_stream_end is not None and now - t_stream_end > s.max_wait:
            raise LiveError(f'no feature_cloud within {s.max_wait:g} s after the stream\n' + node.tail())
        time.sleep(0.2)


def _final_round(res, art, client, seeds, gt, seq, log) -> None:
    t0 = time.monotonic()
    r, answers = _round(client, seeds, gt, res.rounds[-1]['t'] if res.rounds else 0.0, False, with_mask=True)
    last = seq[len(seq) - 1]                       # the node's latest image: the last frame played
    for label in seeds:
        a = answers.get(label)
        entry = {'name': res.objects[label]['name'], 'iou': r['iou'][label], 'points': len(a) if a else 0,
                 'feature_source': a.feature_source if a else '', 'confidence': round(a.confidence, 3) if a else 0.0,
                 'mask_iou': None}
        if a is not None and a.mask is not None and a.mask.shape == last.instance.shape:
            entry['mask_iou'] = round(mask_iou(a.mask, last.instance == label), 4)
        res.final[label] = entry
    art.masks = {k: a.mask for k, a in answers.items() if a.mask is not None}
    art.last_frame = last
    log(f'[live] final round with masks: mean IoU {r["mean"]:.2f} ({time.monotonic() - t0:.1f} s)')


def _counts(res, diag: dict, s) -> None:
    stream = res.times.get('stream_end', float('nan'))
    integrated = int(_num(diag.get('frames_integrated')))
    steps = int(_num(diag.get('train_steps')))
    res.counts = {
        'frames_sent': s.frames, 'received': int(_num(diag.get('received/image'))),
        'submitted': int(_num(diag.get('frames_submitted'))), 'integrated': integrated,
        'dropped_queue': int(_num(diag.get('frames_dropped_queue'))),
        'rejected': int(_num(diag.get('rejected_total'))), 'keyframes': int(_num(diag.get('keyframes'))),
        'train_steps': steps}
    t_end = res.rounds[-1]['t'] if res.rounds else stream
    res.rates = {'frames_per_s': round(integrated / stream, 3) if stream == stream and stream > 0 else None,
                 'steps_per_s': round(steps / t_end, 3) if t_end and t_end > 0 else None}

