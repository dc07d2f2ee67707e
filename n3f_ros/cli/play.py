"""``n3f play``: republish a rosbag2 (mcap or sqlite3) over ROS 2 with the recorded timing.

A small stand-in for ``ros2 bag play`` that needs only ``rclpy`` and ``rosbags`` (the rosbag2
C++ stack is not available from the Python package registries)::

    n3f play BAG [--rate R] [--loop] [--topics T ...] [--remap OLD:=NEW ...] [--clock [HZ]]
                 [--delay S] [--wait-subscribers S] [--wait-topic T ...] [--quiet]

Messages are read with :mod:`n3f_ros.bag.reader`, deserialised by ``rosbags`` and copied field
by field into the ``rclpy`` message class of the same type name (``sensor_msgs/msg/Image`` ->
``sensor_msgs.msg.Image``, imported on demand), then published at
``wall_start + (log_time - bag_start) / rate``. Header stamps are left as recorded; with
``--clock`` the bag's time is published on ``/clock`` so nodes with ``use_sim_time`` follow it.
Publishers use reliable QoS (transient local for topics recorded as latched).

Readiness: ``--wait-subscribers S`` waits up to S seconds for every played topic to have a
subscriber, then plays anyway (naming the topics nobody listens to). ``--wait-topic T ...`` names
topics that *must* have a subscriber (e.g. the image topic of a node that is still loading its
model): playback waits for them (up to ``--wait-subscribers`` S, default
:data:`WAIT_TOPIC_TIMEOUT`) and exits with status 3 and a clear message if none appears; listed
topics the bag does not have are skipped (a launch file can name both the raw and the compressed
image topic), but at least one must be in the bag.
"""
from __future__ import annotations

import array
import functools
import importlib
import re
import signal
import sys
import time

import numpy as np

#: publisher history depth (reliable): enough to absorb a burst of same-stamp messages
QUEUE_DEPTH = 100
#: seconds between progress lines when stderr is not a terminal
PROGRESS_INTERVAL = 5.0
#: [s] extra wait after --wait-subscribers saw every topic matched (see _wait_for_subscribers)
MATCH_SETTLE = 0.3
#: simulated-time topic of --clock (can be remapped like a bag topic)
CLOCK_TOPIC = '/clock'
#: [s] default wait for a subscriber on each --wait-topic when --wait-subscribers is not given
WAIT_TOPIC_TIMEOUT = 60.0
#: exit status when a --wait-topic never got a subscriber
EXIT_NO_SUBSCRIBER = 3


def add_parser(subparsers) -> None:
    """Register ``play`` on the ``n3f`` command line."""
    p = subparsers.add_parser(
        'play', help='republish a rosbag2 (mcap/sqlite3) over ROS 2 with its timing',
        description=__doc__.split('\n\n')[0])
    p.add_argument('bag', help='rosbag2 folder (with metadata.yaml) or .mcap/.db3 file')
    p.add_argument('--rate', type=float, default=1.0, help='playback rate factor (default 1.0)')
    p.add_argument('--loop', action='store_true', help='play again from the start, forever')
    p.add_argument('--topics', nargs='+', metavar='TOPIC', default=None,
                   help="bag topics to play (default: all); a missing one is an error listing "
                        "the bag's topics")
    p.add_argument('--remap', nargs='+', metavar='OLD:=NEW', default=None,
                   help='publish bag topic OLD as NEW (e.g. /camera/color/image_raw:=/image); '
                        '/clock:=NEW moves --clock')
    p.add_argument('--clock', type=float, nargs='?', const=40.0, default=None, metavar='HZ',
                   help='publish the bag time on /clock at HZ (default 40) for use_sim_time nodes')
    p.add_argument('--delay', type=float, default=0.0,
                   help='[s] wait after creating the publishers, before the first message')
    p.add_argument('--wait-subscribers', type=float, default=None, metavar='S',
                   help='[s] wait up to S for every topic to have a subscriber before playing '
                        '(then play anyway); with --wait-topic: how long to wait for those '
                        f'(default {WAIT_TOPIC_TIMEOUT:g})')
    p.add_argument('--wait-topic', nargs='+', metavar='TOPIC[=N]', default=None,
                   help='bag topics that must have a subscriber (N subscribers with TOPIC=N) before playing '
                        '(exit 3 if not after --wait-subscribers S); names not in the bag are skipped, at least '
                        'one must be in it')
    p.add_argument('--quiet', action='store_true', help='no progress output')
    p.set_defaults(func=run)


# --- rosbags -> rclpy message conversion ----------------------------------------------------------

@functools.cache
def message_class(msgtype: str):
    """rclpy class of a ROS type name: ``'sensor_msgs/msg/Image'`` -> ``sensor_msgs.msg.Image``.

    Raises :class:`LookupError` naming the type when its Python package is not installed.
    """
    from n3f_ros.bag.reader import message_class_path

    module_name, class_name = message_class_path(msgtype)
    try:
        module = importlib.import_module(module_name)
        return getattr(module, class_name)
    except (ImportError, AttributeError) as exc:
        raise LookupError(f"message type '{msgtype}' is not available in this ROS 2 environment "
                          f"(cannot import {module_name}.{class_name}: {exc})") from None


_NESTED = re.compile(r'^(?:sequence<)?([A-Za-z_]\w*)/([A-Za-z_]\w*)')
#: element type of a field type string: 'sequence<uint8>' -> uint8, 'double[9]' -> double,
#: 'sequence<string<10>, 5>' -> string
_BASE_TYPE = re.compile(r'^(?:sequence<)?([\w/]+)')


def _element_class(field_type: str, value):
    """Class of the elements of a message-valued array field (from the value or the type string)."""
    msgtype = getattr(value, '__msgtype__', None)
    if msgtype:
        return message_class(msgtype)
    match = _NESTED.match(field_type)
    if not match:
        raise TypeError(f"field type '{field_type}' is not a message type")
    return message_class(f'{match.group(1)}/msg/{match.group(2)}')


def _to_bytes(value) -> bytes:
    """bytes of a uint8/octet sequence given as bytes, numpy array or list of ints."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    return np.asarray(value, dtype=np.uint8).tobytes()


def _convert(current, field_type: str, value):
    """Convert one ``rosbags`` field value to what the rclpy field (default ``current``) takes."""
    base = _BASE_TYPE.match(field_type).group(1)
    if hasattr(value, '__msgtype__') and not isinstance(current, (list, array.array, np.ndarray)):
        return to_ros_message(value, type(current)())
    if isinstance(current, array.array):
        out = array.array(current.typecode)
        if current.typecode in 'Bb' and isinstance(value, (bytes, bytearray, memoryview)):
            out.frombytes(bytes(value))
        else:
            out.frombytes(np.ascontiguousarray(value, dtype=np.dtype(current.typecode)).tobytes())
        return out
    if isinstance(current, np.ndarray):
        return np.asarray(value, dtype=current.dtype).reshape(current.shape)
    if isinstance(current, list):
        items = list(value)
        if base in ('octet', 'byte'):
            return items if items and isinstance(items[0], bytes) else [bytes([b]) for b in _to_bytes(value)]
        if items and hasattr(items[0], '__msgtype__'):
            cls = _element_class(field_type, items[0])
            return [to_ros_message(item, cls()) for item in items]
        if base == 'string' or base == 'wstring':
            return [str(x) for x in items]
        if base == 'boolean':
            return [bool(x) for x in items]
        if base in ('float', 'double', 'float32', 'float64'):
            return [float(x) for x in items]
        return [int(x) for x in items]
    if isinstance(current, bytes):           # byte / octet
        return value if isinstance(value, bytes) else bytes([int(value)])
    if isinstance(current, bool):
        return bool(value)
    if isinstance(current, int):
        return int(value)
    if isinstance(current, float):
        return float(value)
    if isinstance(current, str):
        return str(value)
    return value


def to_ros_message(src, dst=None):
    """Copy a deserialised ``rosbags`` message into an rclpy message, recursively.

    Handles nested messages (``Header``, ``Time``), fixed arrays (numpy), sequences of numbers
    (``array.array``: image/cloud ``data`` is copied as one block, not element by element),
    sequences of messages, strings, booleans and bytes. ``dst`` defaults to a new instance of the
    rclpy class named by ``src.__msgtype__``. A field missing from ``src`` raises
    :class:`AttributeError` naming it.
    """
    if dst is None:
        dst = message_class(src.__msgtype__)()
    for field, field_type in dst.get_fields_and_field_types().items():
        try:
            value = getattr(src, field)
        except AttributeError:
            src_type = getattr(src, '__msgtype__', type(src).__name__)
            raise AttributeError(f"{src_type} has no field '{field}' expected by "
                                 f'{type(dst).__module__}.{type(dst).__name__}') from None
        setattr(dst, field, _convert(getattr(dst, field), field_type, value))
    return dst


# --- playback -------------------------------------------------------------------------------------

class _Progress:
    """tqdm bar on a terminal, a log line every few seconds otherwise, nothing when quiet."""

    def __init__(self, total: int, quiet: bool):
        """``total`` messages per loop."""
        self.total, self.quiet, self.done, self._last = total, quiet, 0, time.monotonic()
        self._bar = None
        if not quiet and sys.stderr.isatty():
            from tqdm import tqdm
            self._bar = tqdm(total=total, unit='msg', file=sys.stderr, mininterval=0.5)

    def update(self, bag_seconds: float) -> None:
        """One more message published; ``bag_seconds`` since the bag's start."""
        self.done += 1
        if self._bar is not None:
            self._bar.update(1)
        elif not self.quiet and time.monotonic() - self._last >= PROGRESS_INTERVAL:
            self._last = time.monotonic()
            print(f'[n3f play] {self.done}/{self.total} msgs, bag time {bag_seconds:.1f} s',
                  file=sys.stderr, flush=True)

    def new_loop(self) -> None:
        """Restart the count for the next loop."""
        self.done = 0
        if self._bar is not None:
            self._bar.reset(total=self.total)

    def close(self) -> None:
        """Close the bar."""
        if self._bar is not None:
            self._bar.close()


def _qos(transient_local: bool):
    """Reliable keep-last publisher QoS, latched for topics recorded as transient local."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=QUEUE_DEPTH,
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if transient_local
                      else DurabilityPolicy.VOLATILE)


def _error(text: str) -> int:
    """Print an error line and return the exit status 2."""
    print(f'n3f play: error: {text}', file=sys.stderr, flush=True)
    return 2


def run(args) -> int:
    """Play the bag; returns the exit status (0 played or interrupted, 2 bad input, 3 no subscriber on --wait-topic)."""
    from n3f_ros.bag.reader import BagError, BagReader, PlaybackSchedule, parse_remaps

    if not args.rate > 0:
        return _error(f'--rate must be > 0, got {args.rate}')
    if args.clock is not None and not args.clock > 0:
        return _error(f'--clock rate must be > 0, got {args.clock}')
    try:
        remaps = parse_remaps(args.remap)
        bag = BagReader(args.bag).open()
    except (ValueError, BagError) as exc:
        return _error(str(exc))
    try:
        infos = {t.name: t for t in bag.topics()}
        unknown = [t for t in remaps if t not in infos and t != CLOCK_TOPIC]
        if unknown:
            return _error(f"--remap of topic(s) {', '.join(unknown)} not in bag {bag.path}; "
                          f"the bag has:\n{bag.describe_topics()}")
        try:
            topics = sorted({c.topic for c in bag.connections(args.topics)})
        except BagError as exc:
            return _error(str(exc))
        for topic in topics:
            try:
                message_class(infos[topic].msgtype)
            except (LookupError, ValueError) as exc:
                return _error(f'topic {topic}: {exc}')
        try:
            wanted = parse_wait_topics(args.wait_topic)
        except ValueError as exc:
            return _error(str(exc))
        required = {t: n for t, n in wanted.items() if t in topics}
        if args.wait_topic and not required:
            return _error(f"none of the --wait-topic topics ({', '.join(args.wait_topic)}) is played from bag "
                          f'{bag.path}; the bag has:\n{bag.describe_topics()}')
        if args.wait_subscribers is not None and args.wait_subscribers < 0:
            return _error(f'--wait-subscribers must be >= 0, got {args.wait_subscribers}')
        return _play(args, bag, topics, infos, remaps, PlaybackSchedule, required)
    finally:
        bag.close()


def _play(args, bag, topics, infos, remaps, schedule_cls, required=()) -> int:
    """Create the node and publishers, wait for subscribers, then publish every message at its deadline."""
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.signals import SignalHandlerOptions

    # Our own handlers: Ctrl-C / SIGTERM end playback cleanly between two messages (rclpy's
    # handlers would invalidate the context under a publish()).
    rclpy.init(args=None, signal_handler_options=SignalHandlerOptions.NO)
    previous_sigterm = signal.signal(signal.SIGTERM, _raise_interrupt)
    node = rclpy.create_node('n3f_play')
    progress = None
    try:
        publishers = {t: node.create_publisher(message_class(infos[t].msgtype), remaps.get(t, t),
                                               _qos(infos[t].transient_local)) for t in topics}
        clock_pub = None
        if args.clock is not None:
            from rosgraph_msgs.msg import Clock
            clock_pub = node.create_publisher(Clock, remaps.get(CLOCK_TOPIC, CLOCK_TOPIC), 10)
        total = bag.count(topics)
        if not args.quiet:
            lines = [f'  {t} -> {remaps.get(t, t)}  [{infos[t].msgtype}]  {infos[t].count} msgs'
                     for t in topics]
            print(f'[n3f play] {bag.path}: {total} msgs, {bag.duration_s:.2f} s at rate {args.rate:g}'
                  + (' (loop)' if args.loop else '') + '\n' + '\n'.join(lines), file=sys.stderr, flush=True)
        if required:
            timeout = WAIT_TOPIC_TIMEOUT if args.wait_subscribers is None else args.wait_subscribers
            waiting = {t: publishers[t] for t in required}
            if not args.quiet:
                print(f"[n3f play] waiting up to {timeout:g} s for a subscriber on "
                      f"{', '.join(remaps.get(t, t) for t in required)}", file=sys.stderr, flush=True)
            missing = _wait_for_subscribers(waiting, timeout, required)
            if missing:
                names = ', '.join(remaps.get(t, t) for t in missing)
                print(f'n3f play: error: no subscriber on {names} after {timeout:g} s: is the node running, '
                      'subscribed to this topic (check its remappings and namespace) and on this '
                      'ROS_DOMAIN_ID? Nothing was played.', file=sys.stderr, flush=True)
                return EXIT_NO_SUBSCRIBER
        elif args.wait_subscribers:
            missing = _wait_for_subscribers(publishers, args.wait_subscribers)
            if missing and not args.quiet:
                print(f"[n3f play] no subscriber after {args.wait_subscribers:g} s on "
                      f"{', '.join(remaps.get(t, t) for t in missing)}; playing anyway",
                      file=sys.stderr, flush=True)
        if args.delay > 0:
            time.sleep(args.delay)
        progress = _Progress(total, args.quiet)
        schedule = schedule_cls(bag.start_ns, args.rate, time.monotonic())
        clock_period = 1.0 / args.clock if args.clock else None
        published = 0
        while True:
            for item in bag.messages(topics):
                deadline = schedule.deadline(item.timestamp_ns)
                _sleep_until(deadline, schedule, clock_pub, clock_period)
                if clock_pub is not None:
                    _publish_clock(clock_pub, item.timestamp_ns)
                publishers[item.topic].publish(to_ros_message(item.msg))
                published += 1
                progress.update((item.timestamp_ns - bag.start_ns) * 1e-9)
            if not args.loop:
                break
            progress.new_loop()
            schedule.restart(time.monotonic())
        progress.close()
        if not args.quiet:
            print(f'[n3f play] done: {published} msgs on {len(topics)} topics', file=sys.stderr, flush=True)
        # Give reliable transport a moment to deliver the last messages before the node goes.
        time.sleep(0.2)
        return 0
    except (KeyboardInterrupt, ExternalShutdownException):
        if not args.quiet:
            print('[n3f play] interrupted', file=sys.stderr, flush=True)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)
        if progress is not None:
            progress.close()
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


def _raise_interrupt(signum, frame):
    """SIGTERM handler: stop playback like Ctrl-C."""
    raise KeyboardInterrupt


def parse_wait_topics(items) -> dict:
    """``--wait-topic`` arguments ``TOPIC`` or ``TOPIC=N`` -> {topic: subscriptions needed (N, default 1)}."""
    out = {}
    for item in items or ():
        topic, sep, n = str(item).partition('=')
        try:
            count = int(n) if sep else 1
        except ValueError:
            count = 0
        if count < 1:
            raise ValueError(f'--wait-topic {item!r}: expected TOPIC or TOPIC=N with N >= 1')
        out[topic] = count
    return out


def _wait_for_subscribers(publishers: dict, timeout: float, counts: dict | None = None) -> list:
    """Wait up to ``timeout`` s until every publisher is matched by at least one subscription
    (``counts``: topic -> how many, default 1).

    Returns the topics still without a subscriber ([] when all matched). Once matched, waits
    :data:`MATCH_SETTLE` s more: the publisher may see the subscription before the subscription
    has matched the publisher, and messages sent in between are only delivered later, in a burst,
    by the reliable protocol.
    """
    end = time.monotonic() + timeout
    while True:
        missing = [t for t, p in publishers.items() if p.get_subscription_count() < (counts or {}).get(t, 1)]
        if not missing:
            time.sleep(MATCH_SETTLE)
            return []
        if time.monotonic() >= end:
            return missing
        time.sleep(0.05)


def _publish_clock(clock_pub, stamp_ns: int) -> None:
    """Publish ``stamp_ns`` on /clock."""
    from rosgraph_msgs.msg import Clock

    msg = Clock()
    msg.clock.sec, msg.clock.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    clock_pub.publish(msg)


def _sleep_until(deadline: float, schedule, clock_pub, clock_period) -> None:
    """Sleep until ``deadline`` (monotonic), publishing /clock every ``clock_period`` meanwhile."""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        if clock_pub is None:
            time.sleep(remaining)
            return
        time.sleep(min(remaining, clock_period))
        _publish_clock(clock_pub, schedule.bag_time_ns(min(time.monotonic(), deadline)))


def main(argv=None) -> int:
    """Run ``n3f play`` on its own (``python -m n3f_ros.cli.play BAG ...``)."""
    import argparse

    parser = argparse.ArgumentParser(prog='n3f')
    add_parser(parser.add_subparsers(dest='command', required=True))
    args = parser.parse_args(['play'] + list(sys.argv[1:] if argv is None else argv))
    return int(args.func(args) or 0)


if __name__ == '__main__':
    sys.exit(main())
