"""DDS delivery benchmark (issue 14, item 5): do camera-sized images reach a subscriber on one machine?

A RealSense-like stream (``rgb8`` colour + ``16UC1`` depth + ``camera_info``, all three with the
same stamp) is published at ``rate`` Hz by one process and counted by another, for each image size
and each *case* (a DDS transport set-up and the two QoS profiles). Both peers are this module run as
``python -m n3f_ros.bench.dds pub|sub`` in their own process and DDS participant, with the case's
environment (e.g. ``FASTDDS_DEFAULT_PROFILES_FILE``), the caller's ``ROS_DOMAIN_ID`` and discovery
range. The publisher starts only once every topic has matched the subscriber, so discovery time is
not counted as loss; the subscriber keeps counting for ``grace`` s after the last message.

Result per (case, size): ``sent`` frames, per topic ``delivered`` (distinct stamps received) and
the ratio, ``complete`` (stamps with colour *and* depth *and* camera_info), the publisher's
achieved rate, and the age of the colour image at the subscriber callback (``latency_ms`` p50 /
p95 / max: stamp to callback, same machine clock).

Cases (:data:`CASES`): ``transport`` names an environment (:func:`transport_env`), ``sub_qos`` /
``pub_qos`` a QoS (:data:`QOS`): ``sensor_data`` is what the node subscribes with by default (best
effort, keep last 5); ``reliable`` is reliable keep-last-``depth`` (what most camera drivers and
``ros2 bag play`` publish with).

CLI: ``n3f bench dds`` (``n3f_ros/cli/bench.py``).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from n3f_ros.bench.results_file import write_json  # noqa: F401 (the benchmark's writer)

#: image sizes of the issue (width, height)
SIZES = ((320, 240), (640, 480), (1280, 720))
#: the three topics of one camera frame
TOPICS = ('image', 'depth', 'camera_info')
#: [s] how long a peer waits for the other to be discovered / matched
MATCH_TIMEOUT = 30.0


def config_dir() -> str:
    """The package's ``config/`` folder: installed share (colcon) or the source tree."""
    here = os.path.dirname(os.path.abspath(__file__))
    src = os.path.normpath(os.path.join(here, '..', '..', 'config'))
    if os.path.isdir(src):
        return src
    from ament_index_python.packages import get_package_share_directory
    return os.path.join(get_package_share_directory('n3f_ros'), 'config')


def transport_env(name: str) -> dict:
    """Environment overrides of a transport set-up; a value of None removes the variable.

    ``default``: Fast DDS as installed (no profile file, no builtin-transport override);
    ``shipped``: the package's profile (:data:`n3f_ros.ros.transport.FASTDDS_PROFILE`), as the launch
    files set it; ``xml:<file>``: another Fast DDS XML profile (relative to ``config/``);
    ``builtin:<MODE>``: ``FASTDDS_BUILTIN_TRANSPORTS=<MODE>`` (e.g. ``LARGE_DATA``).
    """
    from n3f_ros.ros.transport import FASTDDS_PROFILE, FASTDDS_PROFILE_VARIABLES, profile_variables
    clean = dict.fromkeys(FASTDDS_PROFILE_VARIABLES + ('FASTDDS_BUILTIN_TRANSPORTS', 'RMW_FASTRTPS_USE_QOS_FROM_XML'))
    if name == 'default':
        return clean
    if name == 'shipped':
        name = 'xml:' + FASTDDS_PROFILE
    kind, _, arg = name.partition(':')
    if kind == 'xml':
        path = os.path.join(config_dir(), arg)
        if not os.path.isfile(path):
            raise FileNotFoundError(f'Fast DDS profile {path} does not exist')
        return dict(clean, **dict.fromkeys(profile_variables(), path))
    if kind == 'builtin':
        return dict(clean, FASTDDS_BUILTIN_TRANSPORTS=arg)
    raise ValueError(f'unknown transport {name!r}: default, shipped, xml:<file> or builtin:<MODE>')


#: QoS of the benchmark's publisher: what camera drivers and ``ros2 bag play`` use
PUBLISHER_QOS_DEPTH = 10


def make_qos(name: str, depth: int = 0):
    """rclpy QoS of a QoS name (``sensor_data`` or ``reliable``, the node's ``input_qos`` values,
    :func:`n3f_ros.ros.qos.input_qos`); ``depth`` 0 = that name's default depth."""
    from n3f_ros.ros.qos import DEFAULT_INPUT_DEPTH, input_qos
    return input_qos(name, depth or DEFAULT_INPUT_DEPTH)


@dataclass
class Case:
    """One configuration: transport environment (both peers) and QoS of each side."""
    name: str
    transport: str = 'default'
    sub_qos: str = 'sensor_data'
    pub_qos: str = 'reliable'
    sub_depth: int = 0
    pub_transport: str | None = None     # the publisher's transport when it differs (None: the same)


#: the cases ``n3f bench dds --cases`` knows; the first two are the default run
CASES = {c.name: c for c in (
    Case('default', 'default'),                                  # Fast DDS as installed, the node's QoS
    Case('shipped', 'shipped'),                                  # config/fastdds_large_images.xml on both
    Case('default+reliable', 'default', sub_qos='reliable'),     # input_qos: reliable, no profile
    Case('shipped+reliable', 'shipped', sub_qos='reliable'),
    Case('shipped:sub only', 'shipped', pub_transport='default'),   # the camera driver without the profile
    Case('shipped:pub only', 'default', pub_transport='shipped'),   # only the camera driver with it
    Case('LARGE_DATA', 'builtin:LARGE_DATA'),                    # FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA
    Case('shipped+depth1', 'shipped', sub_depth=1),              # input_qos_depth: 1
)}


@dataclass
class Settings:
    sizes: tuple = SIZES
    rate: float = 30.0               # [Hz]
    duration: float = 10.0           # [s] of publishing per (case, size)
    grace: float = 1.5               # [s] the subscriber keeps counting after the publisher ended
    cases: list = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# the two peers (each in its own process)
# ---------------------------------------------------------------------------------------------

def _frames(width: int, height: int, n: int = 4):
    """``n`` distinct (rgb (H,W,3) uint8, depth (H,W) uint16 mm) pairs, cheap to publish again."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        depth = rng.integers(300, 3000, (height, width), dtype=np.uint16)
        out.append((rgb.tobytes(), depth.tobytes()))
    return out


def run_publisher(width: int, height: int, rate: float, duration: float, qos: str, out) -> int:
    """Publish colour + depth + camera_info at ``rate`` for ``duration`` s once all three topics
    matched a subscriber; write a JSON line (sent, achieved rate) to ``out``."""
    import rclpy
    from sensor_msgs.msg import CameraInfo, Image

    from n3f_ros.io import encode
    rclpy.init()
    node = rclpy.create_node('n3f_bench_dds_pub')
    q = make_qos(qos, PUBLISHER_QOS_DEPTH)
    pubs = {'image': node.create_publisher(Image, 'bench/image', q),
            'depth': node.create_publisher(Image, 'bench/depth', q),
            'camera_info': node.create_publisher(CameraInfo, 'bench/camera_info', q)}
    deadline = time.monotonic() + MATCH_TIMEOUT
    while any(p.get_subscription_count() == 0 for p in pubs.values()):
        if time.monotonic() > deadline:
            out.write(json.dumps({'error': 'no subscriber matched'}) + '\n')
            return 2
        time.sleep(0.05)
    time.sleep(0.5)                       # let the reader's side of the match settle too
    frames = _frames(width, height)
    fx = 0.6 * width
    k = [fx, 0.0, width / 2, 0.0, fx, height / 2, 0.0, 0.0, 1.0]
    n = max(1, int(round(duration * rate)))
    period = 1.0 / rate
    t_start = time.monotonic()
    late = 0
    for i in range(n):
        t_due = t_start + i * period
        wait = t_due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        else:
            late += 1
        header = encode.make_header(time.time(), 'camera_color_optical_frame')
        rgb, depth = frames[i % len(frames)]
        pubs['camera_info'].publish(CameraInfo(header=header, width=width, height=height,
                                               distortion_model='plumb_bob', d=[0.0] * 5, k=k))
        pubs['depth'].publish(Image(header=header, height=height, width=width, encoding='16UC1',
                                    is_bigendian=0, step=2 * width, data=depth))
        pubs['image'].publish(Image(header=header, height=height, width=width, encoding='rgb8',
                                    is_bigendian=0, step=3 * width, data=rgb))
    elapsed = time.monotonic() - t_start
    time.sleep(0.5)                       # reliable writers: give repairs a moment before exiting
    out.write(json.dumps({'sent': n, 'seconds': elapsed, 'achieved_hz': n / max(elapsed, 1e-9),
                          'late': late}) + '\n')
    out.flush()
    node.destroy_node()
    rclpy.shutdown()
    return 0


def run_subscriber(qos: str, depth: int, out) -> int:
    """Count distinct stamps per topic until a line arrives on stdin; write one JSON line to ``out``.

    Prints ``ready`` once the subscriptions exist."""
    import threading

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import CameraInfo, Image
    rclpy.init()
    node = rclpy.create_node('n3f_bench_dds_sub')
    q = make_qos(qos, depth)
    stamps = {t: set() for t in TOPICS}
    latency = []
    nbytes = {t: 0 for t in TOPICS}

    def counter(topic):
        def cb(msg):
            s = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            stamps[topic].add(s)
            if topic == 'image':
                latency.append(time.time() - s * 1e-9)
                nbytes[topic] = len(msg.data)
        return cb
    node.create_subscription(Image, 'bench/image', counter('image'), q)
    node.create_subscription(Image, 'bench/depth', counter('depth'), q)
    node.create_subscription(CameraInfo, 'bench/camera_info', counter('camera_info'), q)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.05)
    th = threading.Thread(target=spin, daemon=True)
    th.start()
    print('ready', flush=True)
    sys.stdin.readline()
    stop.set()
    th.join(5.0)
    lat = np.asarray(latency) * 1e3
    complete = len(stamps['image'] & stamps['depth'] & stamps['camera_info'])
    res = {'delivered': {t: len(v) for t, v in stamps.items()}, 'complete': complete,
           'image_bytes': nbytes['image'],
           'latency_ms': ({'p50': float(np.percentile(lat, 50)), 'p95': float(np.percentile(lat, 95)),
                           'max': float(lat.max())} if len(lat) else None)}
    out.write(json.dumps(res) + '\n')
    out.flush()
    node.destroy_node()
    rclpy.shutdown()
    return 0


# ---------------------------------------------------------------------------------------------
# orchestration
# ---------------------------------------------------------------------------------------------

def _peer_env(transport: str) -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    for k, v in transport_env(transport).items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def _last_json(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        if line.startswith('{'):
            return json.loads(line)
    raise RuntimeError(f'no result from the peer; its output:\n{text[-2000:]}')


def _wait_ready(sub: subprocess.Popen) -> None:
    """Read the subscriber's output until its ``ready`` line (log lines such as rmw warnings may
    come first); RuntimeError with what it printed when it exits first."""
    seen = []
    for line in sub.stdout:
        if line.strip() == 'ready':
            return
        seen.append(line)
    raise RuntimeError('subscriber did not start: ' + ''.join(seen)[-2000:])


def run_one(case: Case, width: int, height: int, rate: float, duration: float, grace: float) -> dict:
    """One (case, size): subscriber process, then publisher process; returns the result row."""
    env = _peer_env(case.transport)
    pub_env = _peer_env(case.pub_transport or case.transport)
    py = [sys.executable, '-m', 'n3f_ros.bench.dds']
    sub = subprocess.Popen(py + ['sub', '--qos', case.sub_qos, '--depth', str(case.sub_depth)], env=env,
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_ready(sub)
        pub = subprocess.run(py + ['pub', '--size', f'{width}x{height}', '--rate', str(rate),
                                   '--duration', str(duration), '--qos', case.pub_qos],
                             env=pub_env, capture_output=True, text=True, timeout=duration * 4 + 2 * MATCH_TIMEOUT)
        p = _last_json(pub.stdout + pub.stderr)
        time.sleep(grace)
        s_out, _ = sub.communicate('stop\n', timeout=30)
        s = _last_json(s_out)
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()
    if 'error' in p:
        raise RuntimeError(f"{case.name} {width}x{height}: publisher: {p['error']}")
    sent = p['sent']
    return {'case': case.name, 'transport': case.transport, 'sub_qos': case.sub_qos, 'pub_qos': case.pub_qos,
            'sub_depth': case.sub_depth, 'size': f'{width}x{height}', 'rate_hz': rate, 'sent': sent,
            'achieved_hz': p['achieved_hz'], 'delivered': s['delivered'],
            'ratio': {t: s['delivered'][t] / sent for t in TOPICS}, 'complete': s['complete'],
            'complete_ratio': s['complete'] / sent, 'latency_ms': s['latency_ms'],
            'image_mb': width * height * 3 / 1e6}


def run_dds(settings: Settings, log=print) -> dict:
    rows = []
    for case in settings.cases:
        for (w, h) in settings.sizes:
            r = run_one(case, w, h, settings.rate, settings.duration, settings.grace)
            log(format_row(r))
            rows.append(r)
    return {'settings': {'rate_hz': settings.rate, 'duration_s': settings.duration,
                         'cases': [asdict(c) for c in settings.cases],
                         'sizes': [f'{w}x{h}' for w, h in settings.sizes]},
            'environment': _environment(), 'rows': rows}


def _environment() -> dict:
    from importlib import metadata
    vers = {}
    for pkg in ('ros-rmw-fastrtps-cpp', 'ros-fastdds', 'ros-rclpy'):
        try:
            vers[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            vers[pkg] = None
    return {'packages': vers, 'rmw': os.environ.get('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp (default)'),
            'discovery_range': os.environ.get('ROS_AUTOMATIC_DISCOVERY_RANGE', ''),
            'cpus': os.cpu_count()}


def format_row(r: dict) -> str:
    lat = r['latency_ms']
    lat_s = f"{lat['p50']:.0f}/{lat['p95']:.0f}" if lat else '-'
    return (f"{r['case']:<22} {r['size']:>9}  sent {r['sent']:4d} @ {r['achieved_hz']:4.1f} Hz  "
            f"image {r['ratio']['image']:6.1%}  depth {r['ratio']['depth']:6.1%}  info {r['ratio']['camera_info']:6.1%}"
            f"  complete {r['complete_ratio']:6.1%}  latency p50/p95 {lat_s} ms")


def format_table(result: dict) -> str:
    """Markdown table of the rows: delivered/sent per topic and complete frames, latency."""
    st = result['settings']
    lines = [f"DDS delivery, {st['rate_hz']:g} Hz for {st['duration_s']:g} s per row "
             f"(rmw {result['environment']['rmw']}, discovery range "
             f"{result['environment']['discovery_range'] or 'default'}, {result['environment']['packages']})", '',
             '| case | size | sent | image | depth | camera_info | complete | latency p50 / p95 [ms] |',
             '|---|---|---|---|---|---|---|---|']
    for r in result['rows']:
        lat = r['latency_ms']
        lat_text = f"{lat['p50']:.0f} / {lat['p95']:.0f}" if lat else '-'
        lines.append(f"| {r['case']} | {r['size']} | {r['sent']} | {r['ratio']['image']:.1%} "
                     f"| {r['ratio']['depth']:.1%} | {r['ratio']['camera_info']:.1%} | {r['complete_ratio']:.1%} "
                     f"| {lat_text} |")
    return '\n'.join(lines)


def save_plot(result: dict, png: str) -> None:
    """Bars: complete frames delivered / sent, per size (x) and case (colour)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    sizes = result['settings']['sizes']
    cases = list(dict.fromkeys(r['case'] for r in result['rows']))
    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.8 / max(1, len(cases))
    for j, case in enumerate(cases):
        vals = [next((r['complete_ratio'] for r in result['rows'] if r['case'] == case and r['size'] == sz), np.nan)
                for sz in sizes]
        ax.bar(np.arange(len(sizes)) + (j - (len(cases) - 1) / 2) * width, np.asarray(vals) * 100, width, label=case)
    ax.set_xticks(np.arange(len(sizes)))
    ax.set_xticklabels([f'{s} rgb8 + 16UC1' for s in sizes], fontsize=8)
    ax.set_ylabel('complete frames delivered [%]')
    ax.set_ylim(0, 105)
    ax.set_title(f"camera stream between two processes, {result['settings']['rate_hz']:g} Hz", fontsize=10)
    ax.legend(fontsize=7, loc='lower left')
    fig.tight_layout()
    fig.savefig(png, dpi=80)
    plt.close(fig)


def main(argv=None) -> int:
    import argparse

    from n3f_ros.cli.args import image_size
    ap = argparse.ArgumentParser(prog='python -m n3f_ros.bench.dds', description='peers of the DDS benchmark')
    sp = ap.add_subparsers(dest='role', required=True)
    p = sp.add_parser('pub')
    p.add_argument('--size', type=image_size, default='640x480')
    p.add_argument('--rate', type=float, default=30.0)
    p.add_argument('--duration', type=float, default=10.0)
    p.add_argument('--qos', default='reliable')
    s = sp.add_parser('sub')
    s.add_argument('--qos', default='sensor_data')
    s.add_argument('--depth', type=int, default=0)
    a = ap.parse_args(argv)
    if a.role == 'pub':
        w, h = a.size
        return run_publisher(w, h, a.rate, a.duration, a.qos, sys.stdout)
    return run_subscriber(a.qos, a.depth, sys.stdout)


if __name__ == '__main__':
    raise SystemExit(main())
