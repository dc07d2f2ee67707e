"""The live node under load, from outside (issue 14): its own console script, real DDS, three processes.

* the **node**: ``n3f_node`` with the shipped ``config/n3f.yaml`` (random-init teacher by default:
  same architecture and cost, no weights needed), in its own process (``start_node``, a
  :class:`~n3f_ros.bench.node_process.NodeProcess`);
* the **feeder**: a camera-like stream of a synthetic scene (rgb8 + 16UC1 depth + camera_info +
  PoseStamped, all with the publication time as stamp) at ``rate`` Hz, reliable keep-last-10 like a
  RealSense driver, in its own process (``python -m n3f_ros.bench.node_load feed``, :class:`Feeder`); a
  short arc of the orbit is rendered once and played back and forth (continuous poses);
* the **observer** (this process, :class:`Observer`): the node's ``diagnostics`` (``received/*``,
  ``frames_integrated``, ...), optionally a ``feature_cloud`` subscriber (RViz's load on the
  node), a :class:`n3f_ros.client.N3FClient` for ``~/query``, and the node's RSS from ``/proc``.

The benchmarks built on these: :func:`run_receive` (what the node receives of what was sent, per
image size), :func:`run_latency_load` (query latency and diagnostics period, idle and beside
CPU-bound processes) and :func:`run_soak` (RSS and counts over a long run). CLI: ``n3f bench
node-rx | latency-load | soak`` (``n3f_ros/cli/bench.py``). All processes inherit
``ROS_DOMAIN_ID`` and ``ROS_AUTOMATIC_DISCOVERY_RANGE``; the transport set-up (``shipped`` or
``default``, :func:`n3f_ros.bench.dds.transport_env`) is given to the node and the feeder alike.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

import numpy as np

from n3f_ros.bench.dds import transport_env
from n3f_ros.bench.node_process import NodeProcess
from n3f_ros.bench.results_file import write_json  # noqa: F401 (the benchmark's writer)

#: the node's namespace in these benchmarks (its topics: /n3f_bench/image, ...); ``N3F_BENCH_NS``
#: in the environment gives another (two benchmarks at once in one ROS domain)
NAMESPACE = os.environ.get('N3F_BENCH_NS', '/n3f_bench')
#: [s] between two status writes of the feeder
STATUS_PERIOD = 1.0
#: node parameters of every run: no weights needed, the shipped config otherwise
BASE_PARAMS = {'teacher_random_init': 'true'}


def _env(transport: str, extra: dict | None = None) -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED='1', RCUTILS_COLORIZED_OUTPUT='0')
    env.setdefault('OMP_NUM_THREADS', '1')
    for k, v in transport_env(transport).items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    env.update(extra or {})
    return env


def rss_mib(pid: int) -> float:
    """Resident set size of process ``pid`` [MiB] (VmRSS of /proc/<pid>/status), nan if gone."""
    try:
        with open(f'/proc/{pid}/status') as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float('nan')


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` [s] (/proc/<pid>/stat), nan if gone."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            fields = f.read().rsplit(')', 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')
    except (OSError, IndexError, ValueError):
        return float('nan')


@contextlib.contextmanager
def cpu_hogs(n: int):
    """``n`` CPU-bound processes (``while True: pass``) for the block: other work on the robot's CPU."""
    procs = [subprocess.Popen([sys.executable, '-c', 'while True: pass']) for _ in range(n)]
    try:
        yield procs
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


# ---------------------------------------------------------------------------------------------
# the node
# ---------------------------------------------------------------------------------------------

def start_node(params: dict, transport: str, log_path: str, nice: int = 0, env: dict | None = None) -> NodeProcess:
    """``n3f_node`` with the shipped config, ``BASE_PARAMS`` + ``params``, in :data:`NAMESPACE`, with
    the environment of ``transport`` (``dds.transport_env``) and ``env``."""
    overrides = {'OMP_NUM_THREADS': os.environ.get('OMP_NUM_THREADS', '1'), **transport_env(transport), **(env or {})}
    return NodeProcess(dict(BASE_PARAMS, **params), NAMESPACE, log_path, env=overrides, nice=nice)


# ---------------------------------------------------------------------------------------------
# the feeder (own process)
# ---------------------------------------------------------------------------------------------

def feed(width: int, height: int, rate: float, duration: float, status_path: str, frames: int = 30,
         seed: int = 0, depth: bool = True) -> int:
    """Publish the stream until ``duration`` s passed (0 = until SIGINT/SIGTERM); write
    ``{'sent': {topic: n}, 'objects': [[x, y, z], ...], 'publishing': bool, 'achieved_hz'}`` to
    ``status_path`` every :data:`STATUS_PERIOD` s and at the end. Starts publishing once the node's
    image subscription matched."""
    import rclpy
    from geometry_msgs.msg import PoseStamped
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image

    from n3f_ros.core.synth import make_sequence
    from n3f_ros.io import encode

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    seq = make_sequence(seed, frames * 8, width, height, fps=rate)     # 1/8 of an orbit is played
    cam = seq.camera
    msgs = []
    for i in range(frames):                     # pre-render and pre-serialise-able payloads
        f = seq[i]
        mm = np.where(np.isfinite(f.depth) & (f.depth > 0), np.round(f.depth * 1000.0), 0)
        msgs.append((np.ascontiguousarray(f.rgb).tobytes(), np.clip(mm, 0, 65535).astype('<u2').tobytes(),
                     f.T_world_cam))
    objects = [list(map(float, o.center)) for o in seq.scene.objects]
    rclpy.init()
    node = rclpy.create_node('n3f_bench_feeder', namespace=NAMESPACE)
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    pub_img = node.create_publisher(Image, 'image', qos)
    pub_depth = node.create_publisher(Image, 'depth', qos)
    pub_info = node.create_publisher(CameraInfo, 'camera_info', qos)
    pub_pose = node.create_publisher(PoseStamped, 'pose', qos)
    k = cam.K.reshape(-1).tolist()
    p = np.hstack([cam.K, np.zeros((3, 1))]).reshape(-1).tolist()
    sent = {'image': 0, 'depth': 0, 'camera_info': 0, 'pose': 0}
    state = {'publishing': False, 't0': None}

    def write_status():
        el = time.monotonic() - state['t0'] if state['t0'] else 0.0
        tmp = status_path + '.tmp'
        with open(tmp, 'w') as fh:
            json.dump({'sent': sent, 'objects': objects, 'publishing': state['publishing'],
                       'seconds': el, 'achieved_hz': sent['image'] / el if el > 0 else 0.0}, fh)
        os.replace(tmp, status_path)

    write_status()
    while pub_img.get_subscription_count() == 0 and not stop.is_set():
        time.sleep(0.1)
    time.sleep(1.0)
    state['publishing'], state['t0'] = True, time.monotonic()
    period = 1.0 / rate
    order = list(range(frames)) + list(range(frames - 2, 0, -1))       # back and forth
    i, next_status = 0, time.monotonic() + STATUS_PERIOD
    while not stop.is_set() and (duration <= 0 or time.monotonic() - state['t0'] < duration):
        due = state['t0'] + i * period
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        rgb, dep, T = msgs[order[i % len(order)]]
        h = encode.make_header(time.time(), 'camera_color_optical_frame')
        pub_pose.publish(encode.pose_stamped_msg(T, encode.make_header(h.stamp, 'map')))
        pub_info.publish(CameraInfo(header=h, width=cam.width, height=cam.height, distortion_model='plumb_bob',
                                    d=[0.0] * 5, k=k, p=p, r=np.eye(3).reshape(-1).tolist()))
        if depth:
            pub_depth.publish(Image(header=h, height=cam.height, width=cam.width, encoding='16UC1',
                                    is_bigendian=0, step=2 * cam.width, data=dep))
            sent['depth'] += 1
        pub_img.publish(Image(header=h, height=cam.height, width=cam.width, encoding='rgb8', is_bigendian=0,
                              step=3 * cam.width, data=rgb))
        for t in ('image', 'camera_info', 'pose'):
            sent[t] += 1
        i += 1
        if time.monotonic() >= next_status:
            write_status()
            next_status += STATUS_PERIOD
    state['publishing'] = False
    write_status()
    time.sleep(0.5)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


class Feeder:
    """The feeder process; :meth:`status` reads its latest status file."""

    def __init__(self, width: int, height: int, rate: float, transport: str, workdir: str, duration: float = 0.0,
                 frames: int = 30, nice: int = 0):
        self.status_path = os.path.join(workdir, f'feeder_{os.getpid()}_{width}x{height}.json')
        self.log_path = self.status_path.replace('.json', '.log')
        cmd = [sys.executable, '-m', 'n3f_ros.bench.node_load', 'feed', '--size', f'{width}x{height}', '--rate',
               str(rate), '--duration', str(duration), '--frames', str(frames), '--status', self.status_path]
        if nice:
            cmd = ['nice', '-n', str(nice)] + cmd
        self._log = open(self.log_path, 'w')
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=_env(transport))

    def status(self) -> dict:
        try:
            with open(self.status_path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def wait_publishing(self, timeout: float = 240.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.status()
            if st.get('publishing'):
                return st
            if self.proc.poll() is not None:
                with open(self.log_path) as f:
                    raise RuntimeError(f'feeder exited ({self.proc.returncode}):\n{f.read()[-3000:]}')
            time.sleep(0.2)
        raise RuntimeError('feeder did not start publishing (no image subscriber matched?)')

    def stop(self) -> dict:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.status()


# ---------------------------------------------------------------------------------------------
# the observer (this process)
# ---------------------------------------------------------------------------------------------

class Observer:
    """diagnostics (+ feature_cloud) subscriber and query client in this process, spun in a thread."""

    def __init__(self, cloud_subscriber: bool = False):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import MultiThreadedExecutor
        from sensor_msgs.msg import PointCloud2

        from n3f_ros.client import N3FClient
        if not rclpy.ok():
            rclpy.init()
        self.node = rclpy.create_node('n3f_bench_observer', namespace=NAMESPACE)
        self.lock = threading.Lock()
        self.diag = []                 # (arrival monotonic, header stamp [s], {key: value str})
        self.clouds = []               # (arrival monotonic, points)
        self.node.create_subscription(DiagnosticArray, 'diagnostics', self._on_diag, 10)
        if cloud_subscriber:
            self.node.create_subscription(PointCloud2, 'feature_cloud', self._on_cloud, 1)
        self.client = N3FClient(self.node, spin=False, timeout=60.0, with_mask=False)
        self.executor = MultiThreadedExecutor(num_threads=2)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def _on_diag(self, msg) -> None:
        vals = {kv.key: kv.value for st in msg.status for kv in st.values}
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        with self.lock:
            self.diag.append((time.monotonic(), stamp, vals))

    def _on_cloud(self, msg) -> None:
        with self.lock:
            self.clouds.append((time.monotonic(), msg.width * msg.height))

    def latest(self) -> dict:
        with self.lock:
            return dict(self.diag[-1][2]) if self.diag else {}

    def value(self, key: str, default=0.0) -> float:
        v = self.latest().get(key)
        try:
            return float(v)
        except (TypeError, ValueError):
            return default

    def wait_diag(self, pred, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            vals = self.latest()
            if vals and pred(vals):
                return vals
            time.sleep(0.2)
        raise RuntimeError(f'timed out after {timeout:g} s waiting for {what}; last diagnostics: '
                           f'{ {k: v for k, v in self.latest().items() if k.startswith(("received/", "frames_"))} }')

    def close(self) -> None:
        import rclpy
        self.client.close()
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown()


def _counts(vals: dict, prefixes=('received/', 'frames_', 'rejected_total', 'keyframes', 'train_steps',
                                  'worker_errors', 'queue_dropped', 'requests_', 'query_latency_ms')) -> dict:
    out = {}
    for k, v in vals.items():
        if k.startswith(prefixes):
            try:
                out[k] = float(v)
            except ValueError:
                out[k] = v
    return out


def _pct(values, qs=(50, 95)) -> dict:
    a = np.asarray(values, dtype=float)
    if not len(a):
        return {'n': 0}
    return dict({f'p{q}': float(np.percentile(a, q)) for q in qs}, max=float(a.max()), mean=float(a.mean()),
                n=int(len(a)))


# ---------------------------------------------------------------------------------------------
# benchmarks
# ---------------------------------------------------------------------------------------------

@dataclass
class ReceiveSettings:
    sizes: tuple = ((640, 480), (1280, 720))
    rate: float = 30.0
    duration: float = 30.0            # [s] of feeding per size (after the node saw the first frame)
    transports: tuple = ('shipped',)
    params: dict | None = None        # extra node parameters (e.g. input_qos)


def _stop_all(node, feeder, obs) -> None:
    """End a benchmark session: the feeder (if still running), the observer, the node."""
    if feeder is not None and feeder.proc.poll() is None:
        feeder.stop()
    if obs is not None:
        obs.close()
    node.stop()


def run_receive(s: ReceiveSettings, log=print) -> dict:
    """Per (transport, size): frames sent by the feeder vs ``received/image`` (and depth,
    camera_info) in the node's diagnostics and ``frames_integrated``."""
    rows = []
    with tempfile.TemporaryDirectory(prefix='n3f_bench_rx_') as tmp:
        for transport in s.transports:
            for (w, h) in s.sizes:
                node = start_node(dict(s.params or {}), transport, os.path.join(tmp, 'node.log'))
                obs = feeder = None
                try:
                    node.wait_ready()
                    obs = Observer()
                    feeder = Feeder(w, h, s.rate, transport, tmp, duration=s.duration,
                                    frames=12 if w * h > 640 * 480 else 30)
                    feeder.wait_publishing()
                    feeder.proc.wait(s.duration + 120)
                    time.sleep(2.5)            # the last counts reach diagnostics (1 Hz)
                    st = feeder.stop()
                    c = _counts(obs.latest())
                finally:
                    _stop_all(node, feeder, obs)
                sent = st['sent']
                row = {'transport': transport, 'size': f'{w}x{h}', 'sent': sent, 'achieved_hz': st['achieved_hz'],
                       'received': {t: c.get(f'received/{t}', 0.0) for t in ('image', 'depth', 'camera_info', 'pose')},
                       'frames_submitted': c.get('frames_submitted', 0.0),
                       'frames_integrated': c.get('frames_integrated', 0.0), 'counts': c}
                row['ratio'] = {t: row['received'][t] / max(sent[t], 1) for t in ('image', 'depth', 'camera_info')}
                log(f"node rx {transport:<8} {row['size']:>9}: sent {sent['image']} @ {row['achieved_hz']:.1f} Hz, "
                    f"received image {row['ratio']['image']:.1%} depth {row['ratio']['depth']:.1%} "
                    f"camera_info {row['ratio']['camera_info']:.1%}, submitted {row['frames_submitted']:.0f}, "
                    f"integrated {row['frames_integrated']:.0f}")
                rows.append(row)
    return {'settings': {'rate_hz': s.rate, 'duration_s': s.duration, 'params': s.params or {}}, 'rows': rows}


def main(argv=None) -> int:
    import argparse

    from n3f_ros.cli.args import image_size
    ap = argparse.ArgumentParser(prog='python -m n3f_ros.bench.node_load', description='feeder of the live benchmarks')
    sp = ap.add_subparsers(dest='role', required=True)
    f = sp.add_parser('feed')
    f.add_argument('--size', type=image_size, default='320x240')
    f.add_argument('--rate', type=float, default=30.0)
    f.add_argument('--duration', type=float, default=0.0)
    f.add_argument('--frames', type=int, default=30)
    f.add_argument('--status', required=True)
    a = ap.parse_args(argv)
    w, h = a.size
    return feed(w, h, a.rate, a.duration, a.status, frames=a.frames)


if __name__ == '__main__':
    raise SystemExit(main())


# ---------------------------------------------------------------------------------------------
# query latency and diagnostics period under load (issue 14, item 4)
# ---------------------------------------------------------------------------------------------

@dataclass
class LatencySettings:
    size: tuple = (320, 240)
    rate: float = 30.0
    phases: tuple = (('idle', 0), ('2 cpu hogs', 2))    # (name, CPU-bound processes beside the node)
    warmup: float = 60.0              # [s] of mapping before the first phase (a field and a cloud exist)
    phase_seconds: float = 120.0      # [s] of queries per phase
    query_period: float = 0.25        # [s] pause between the end of an answer and the next query
    transport: str = 'shipped'
    with_mask: bool = False           # also render the 2D mask (seconds on a CPU: a separate figure)
    params: dict | None = None


def _diag_periods(diag, t0: float, t1: float) -> dict:
    """Periods between diagnostics messages that arrived in [t0, t1] (monotonic): by the node's own
    header stamps (``stamp``) and by arrival here (``arrival``); mean and max gap [s]."""
    sel = [(a, s) for a, s, _ in diag if t0 <= a <= t1]
    out = {}
    for name, idx in (('stamp', 1), ('arrival', 0)):
        ts = np.asarray([x[idx] for x in sel])
        d = np.diff(ts) if len(ts) > 1 else np.zeros(0)
        nan = float('nan')
        out[name] = {'mean': float(d.mean()) if len(d) else nan, 'max': float(d.max()) if len(d) else nan,
                     'n': int(len(ts))}
    return out


def run_latency_load(s: LatencySettings, log=print) -> dict:
    """The node maps the stream with a ``feature_cloud`` subscriber attached; per phase (idle, then
    beside CPU-bound processes) ``~/query`` by point on the scene's objects one after another:
    answer latency p50/p95/max, failures, and the diagnostics period (mean, max gap)."""
    params = dict(s.params or {})
    phases = []
    with tempfile.TemporaryDirectory(prefix='n3f_bench_lat_') as tmp:
        node = start_node(params, s.transport, os.path.join(tmp, 'node.log'))
        obs = feeder = None
        try:
            node.wait_ready()
            obs = Observer(cloud_subscriber=True)
            feeder = Feeder(s.size[0], s.size[1], s.rate, s.transport, tmp)
            st = feeder.wait_publishing()
            objects = st['objects']
            obs.wait_diag(lambda v: float(v.get('cloud_points', 0)) > 0, 300.0, 'a first feature cloud')
            time.sleep(max(0.0, s.warmup))
            for name, hogs in s.phases:
                with cpu_hogs(hogs):
                    time.sleep(2.0)
                    c0 = _counts(obs.latest())
                    lat, failures, empty, t_start = [], 0, 0, time.monotonic()
                    clouds0 = len(obs.clouds)
                    i = 0
                    while time.monotonic() - t_start < s.phase_seconds:
                        xyz = objects[i % len(objects)]
                        i += 1
                        t0 = time.monotonic()
                        try:
                            ans = obs.client.query_point(xyz, with_mask=s.with_mask, timeout=60.0)
                            lat.append(time.monotonic() - t0)
                            empty += int(ans.empty)
                        except Exception as e:  # noqa: BLE001 - a timeout or refusal is a measured failure
                            failures += 1
                            log(f'  query failed: {type(e).__name__}: {e}')
                        time.sleep(s.query_period)
                    t_end = time.monotonic()
                    c1 = _counts(obs.latest())
                    cloud_times = [a for a, _ in obs.clouds[clouds0:]]
                periods = _diag_periods(obs.diag, t_start, t_end)
                row = {'phase': name, 'cpu_hogs': hogs, 'seconds': t_end - t_start, 'queries': len(lat) + failures,
                       'failures': failures, 'empty_answers': empty, 'latency_s': _pct(lat),
                       'latencies_s': [round(x, 4) for x in lat],
                       'diagnostics_period_s': periods,
                       'clouds_received': len(cloud_times),
                       'cloud_gap_max_s': float(np.max(np.diff(cloud_times))) if len(cloud_times) > 1 else float('nan'),
                       'train_steps': c1.get('train_steps', 0) - c0.get('train_steps', 0),
                       'frames_integrated': c1.get('frames_integrated', 0) - c0.get('frames_integrated', 0),
                       'cloud_ms': float(obs.value('cloud_ms', float('nan'))),
                       'train_step_ms': float(obs.value('train_step_ms', float('nan'))),
                       'node_query_latency_ms': float(obs.value('query_latency_ms', float('nan')))}
                log(format_latency_row(row))
                phases.append(row)
        finally:
            if feeder is not None:
                feeder.stop()
            if obs is not None:
                obs.close()
            node.stop()
    return {'settings': {'size': f'{s.size[0]}x{s.size[1]}', 'rate_hz': s.rate, 'warmup_s': s.warmup,
                         'phase_seconds': s.phase_seconds, 'query_period_s': s.query_period,
                         'transport': s.transport, 'with_mask': s.with_mask, 'params': params},
            'machine': _machine(), 'phases': phases}


def format_latency_row(r: dict) -> str:
    lat, d = r['latency_s'], r['diagnostics_period_s']['stamp']
    q = (f"p50 {lat['p50']:.2f} p95 {lat['p95']:.2f} max {lat['max']:.2f} s" if lat.get('n') else 'no answer')
    return (f"{r['phase']:<12} queries {r['queries']:4d} (failed {r['failures']}, empty {r['empty_answers']}): {q}; "
            f"diagnostics period mean {d['mean']:.2f} s, max gap {d['max']:.2f} s; clouds {r['clouds_received']} "
            f"(max gap {r['cloud_gap_max_s']:.1f} s); train steps {r['train_steps']:.0f}, "
            f"frames integrated {r['frames_integrated']:.0f}")


def _machine() -> dict:
    import platform
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {'cpus': os.cpu_count(), 'processor': platform.processor() or platform.machine(),
            'loadavg_at_end': load}


# ---------------------------------------------------------------------------------------------
# soak: RSS and counts over a long run (issue 14: >= 20 min, not CI)
# ---------------------------------------------------------------------------------------------

@dataclass
class SoakSettings:
    size: tuple = (320, 240)
    rate: float = 30.0
    minutes: float = 25.0
    sample_period: float = 5.0        # [s]
    warmup: float = 300.0             # [s] excluded from the flatness fit
    cloud_subscriber: bool = True
    transport: str = 'shipped'
    params: dict | None = None
    node_env: dict | None = None      # extra environment of the node (e.g. MALLOC_ARENA_MAX)


def run_soak(s: SoakSettings, log=print, json_path: str | None = None) -> dict:
    """Feed the node for ``minutes``; every ``sample_period`` s record its RSS and the feeder's sent
    and the node's received / integrated counts. Writes ``json_path`` after every minute too (a
    long run that is interrupted still leaves its samples)."""
    params = dict(s.params or {})
    samples = []
    rss_ready = float('nan')
    result = {'settings': {'size': f'{s.size[0]}x{s.size[1]}', 'rate_hz': s.rate, 'minutes': s.minutes,
                           'sample_period_s': s.sample_period, 'warmup_s': s.warmup,
                           'cloud_subscriber': s.cloud_subscriber, 'transport': s.transport, 'params': params,
                           'node_env': dict(s.node_env or {}), 'nice': os.nice(0)},
              'samples': samples}
    with tempfile.TemporaryDirectory(prefix='n3f_bench_soak_') as tmp:
        node = start_node(params, s.transport, os.path.join(tmp, 'node.log'), env=s.node_env)
        obs = feeder = None
        try:
            node.wait_ready()
            rss_ready = rss_mib(node.pid)
            obs = Observer(cloud_subscriber=s.cloud_subscriber)
            feeder = Feeder(s.size[0], s.size[1], s.rate, s.transport, tmp)
            feeder.wait_publishing()
            t0 = time.monotonic()
            next_dump = t0 + 60.0
            while time.monotonic() - t0 < s.minutes * 60.0:
                time.sleep(s.sample_period)
                if feeder.proc.poll() is not None or node.proc.poll() is not None:
                    raise RuntimeError(f'a process ended early:\n{node.tail()}')
                c, st = _counts(obs.latest()), feeder.status()
                samples.append({'t': time.monotonic() - t0, 'rss_mib': rss_mib(node.pid),
                                'cpu_s': cpu_seconds(node.pid), 'sent': st.get('sent', {}).get('image', 0),
                                'received': c.get('received/image', 0.0),
                                'received_depth': c.get('received/depth', 0.0),
                                'frames_integrated': c.get('frames_integrated', 0.0),
                                'train_steps': c.get('train_steps', 0.0), 'keyframes': c.get('keyframes', 0.0),
                                'worker_errors': c.get('worker_errors', 0.0),
                                'rejected_total': c.get('rejected_total', 0.0), 'clouds': len(obs.clouds)})
                if time.monotonic() >= next_dump:
                    next_dump += 60.0
                    last = samples[-1]
                    log(f"soak {last['t'] / 60:5.1f} min: RSS {last['rss_mib']:.0f} MiB, sent {last['sent']}, "
                        f"received {last['received']:.0f}, integrated {last['frames_integrated']:.0f}, "
                        f"steps {last['train_steps']:.0f}, keyframes {last['keyframes']:.0f}")
                    if json_path:
                        write_json(dict(result, summary=soak_summary(samples, s.warmup, rss_ready)), json_path)
            time.sleep(2.5)
            final = feeder.stop()
            c = _counts(obs.latest())
            result['final'] = {'sent': final.get('sent', {}), 'received': {
                t: c.get(f'received/{t}', 0.0) for t in ('image', 'depth', 'camera_info', 'pose')},
                'counts': c, 'node_log_tail': node.tail(15)}
        finally:
            _stop_all(node, feeder, obs)
    result['summary'] = soak_summary(samples, s.warmup, rss_ready)
    result['machine'] = _machine()
    if json_path:
        write_json(result, json_path)
    return result


def soak_summary(samples: list, warmup: float, rss_ready: float = float('nan')) -> dict:
    """Images lost before the callback (1 - received / sent), RSS at start / after warm-up / end,
    and the RSS slope after warm-up and over the second half of the run (least squares, MiB per hour)."""
    if not samples:
        return {}
    last = samples[-1]
    t = np.asarray([x['t'] for x in samples])
    rss = np.asarray([x['rss_mib'] for x in samples])
    after = t >= warmup
    slope = float(np.polyfit(t[after] / 3600.0, rss[after], 1)[0]) if after.sum() >= 3 else float('nan')
    half = t >= t[-1] / 2
    slope_half = float(np.polyfit(t[half] / 3600.0, rss[half], 1)[0]) if half.sum() >= 3 else float('nan')
    return {'minutes': float(last['t'] / 60.0), 'sent': int(last['sent']), 'received': float(last['received']),
            'lost_before_callback': 1.0 - float(last['received']) / max(1, last['sent']),
            'frames_integrated': float(last['frames_integrated']), 'train_steps': float(last['train_steps']),
            'worker_errors': float(last['worker_errors']),
            'rss_ready_mib': rss_ready, 'rss_first_mib': float(rss[0]),
            'rss_at_warmup_mib': float(rss[after][0]) if after.any() else float('nan'),
            'rss_end_mib': float(rss[-1]), 'rss_max_mib': float(rss.max()),
            'rss_slope_after_warmup_mib_per_h': slope, 'rss_slope_last_half_mib_per_h': slope_half}


def save_soak_plot(result: dict, png: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    smp = result['samples']
    t = np.asarray([x['t'] for x in smp]) / 60.0
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    a1.plot(t, [x['rss_mib'] for x in smp], color='tab:blue')
    a1.axvline(result['settings']['warmup_s'] / 60.0, color='grey', ls=':', lw=1)
    a1.set_ylabel('node RSS [MiB]')
    st = result['settings']
    a1.set_title(f"n3f_node soak: {st['size']} @ {st['rate_hz']:g} Hz, {st['transport']} transport")
    sent = np.asarray([x['sent'] for x in smp], float)
    rec = np.asarray([x['received'] for x in smp], float)
    dt = np.diff(t * 60.0)
    dt[dt <= 0] = np.nan
    a2.plot(t[1:], np.diff(sent) / dt, label='sent [Hz]', color='tab:grey')
    a2.plot(t[1:], np.diff(rec) / dt, label='received/image [Hz]', color='tab:green')
    integ = np.asarray([x['frames_integrated'] for x in smp], float)
    a2.plot(t[1:], np.diff(integ) / dt, label='integrated [Hz]', color='tab:orange')
    a2.set_xlabel('minutes')
    a2.set_ylabel('rate')
    a2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=80)
    plt.close(fig)
