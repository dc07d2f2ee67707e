"""Reading rosbag2 recordings (mcap or sqlite3) with ``rosbags``: no ROS installation needed.

Used by ``n3f play`` (which republishes over ROS 2) and by offline tools. Nothing here imports
``rclpy``; messages come out as ``rosbags`` dataclasses, which carry the same field names as the
ROS messages (numeric arrays are numpy arrays).

Errors are specific and readable:

* :class:`BagNotFoundError` (a :class:`FileNotFoundError`) for a path that does not exist;
* :class:`BagError` for a path that is not a readable bag;
* :class:`TopicNotFoundError` when a requested topic is not recorded; its message lists the
  bag's topics with their types and message counts.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.rosbag2 import ReaderError as Rosbag2ReaderError
from rosbags.typesys import Stores, get_typestore

#: Typestore used for bags that do not embed their message definitions (older sqlite3 bags).
DEFAULT_STORE = Stores.ROS2_HUMBLE


class BagError(RuntimeError):
    """The path exists but cannot be read as a rosbag2."""


class BagNotFoundError(BagError, FileNotFoundError):
    """The bag path does not exist."""


class TopicNotFoundError(BagError, KeyError):
    """A requested topic is not in the bag; ``str()`` lists the bag's topics."""

    def __str__(self):
        """Plain message (KeyError would quote it)."""
        return str(self.args[0]) if self.args else ''


@dataclasses.dataclass(frozen=True)
class TopicInfo:
    """One recorded topic: name, ROS type (``pkg/msg/Name``), message count, latched or not."""

    name: str
    msgtype: str
    count: int
    transient_local: bool = False


@dataclasses.dataclass(frozen=True)
class BagMessage:
    """One deserialised message with its recording time (nanoseconds, the bag's log time)."""

    topic: str
    msgtype: str
    timestamp_ns: int
    msg: object


def _is_transient_local(connection) -> bool:
    """True when a recorded publisher offered TRANSIENT_LOCAL durability (e.g. /tf_static)."""
    ext = getattr(connection, 'ext', None)
    for qos in getattr(ext, 'offered_qos_profiles', None) or ():
        durability = getattr(qos, 'durability', None)
        if getattr(durability, 'name', str(durability)).upper() == 'TRANSIENT_LOCAL':
            return True
    return False


class BagReader:
    """A rosbag2 opened for reading (context manager).

    ``path`` is the bag folder (with ``metadata.yaml``) or a single ``.mcap`` / ``.db3`` file.
    """

    def __init__(self, path: str | Path):
        """Check the path; the bag is opened by :meth:`open` or ``with``."""
        self.path = Path(path).expanduser()
        if not self.path.exists():
            raise BagNotFoundError(f'bag not found: {self.path} (expected a rosbag2 folder or an '
                                   f'.mcap/.db3 file)')
        if self.path.is_dir() and not (self.path / 'metadata.yaml').exists():
            raise BagError(f'{self.path} is a folder without metadata.yaml: not a rosbag2 bag folder')
        self._reader: AnyReader | None = None

    def open(self) -> BagReader:
        """Open the bag; raises :class:`BagError` when it is not a readable rosbag2."""
        try:
            reader = AnyReader([self.path], default_typestore=get_typestore(DEFAULT_STORE))
            reader.open()
        except (AnyReaderError, Rosbag2ReaderError, OSError, ValueError, KeyError) as exc:
            raise BagError(f'cannot read {self.path} as a rosbag2 (mcap or sqlite3): {exc}') from exc
        self._reader = reader
        return self

    def close(self) -> None:
        """Close the bag (idempotent)."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def __enter__(self):
        """Open on entering a ``with`` block."""
        return self.open()

    def __exit__(self, *exc) -> None:
        """Close on leaving a ``with`` block."""
        self.close()

    @property
    def reader(self) -> AnyReader:
        """The underlying ``rosbags`` reader (the bag must be open)."""
        if self._reader is None:
            raise BagError(f'bag {self.path} is not open')
        return self._reader

    # --- contents -------------------------------------------------------------------------------

    def topics(self) -> list[TopicInfo]:
        """Recorded topics, sorted by name (several connections of one topic are merged)."""
        merged: dict[str, TopicInfo] = {}
        for conn in self.reader.connections:
            old = merged.get(conn.topic)
            merged[conn.topic] = TopicInfo(
                conn.topic, conn.msgtype, conn.msgcount + (old.count if old else 0),
                _is_transient_local(conn) or bool(old and old.transient_local))
        return [merged[name] for name in sorted(merged)]

    def describe_topics(self) -> str:
        """Human-readable list of the bag's topics, one per line."""
        lines = [f'  {t.name}  [{t.msgtype}]  {t.count} msgs' for t in self.topics()]
        return '\n'.join(lines) if lines else '  (no topics)'

    @property
    def start_ns(self) -> int:
        """Recording time of the first message (ns)."""
        return int(self.reader.start_time)

    @property
    def end_ns(self) -> int:
        """Recording time just after the last message (ns)."""
        return int(self.reader.end_time)

    @property
    def duration_s(self) -> float:
        """Recorded span in seconds."""
        return max(0, self.end_ns - self.start_ns) * 1e-9

    def connections(self, topics: Sequence[str] | None = None) -> list:
        """Connections of ``topics`` (all when None/empty).

        An unknown topic raises :class:`TopicNotFoundError` listing the bag's topics.
        """
        conns = list(self.reader.connections)
        if not topics:
            return conns
        known = {c.topic for c in conns}
        missing = [t for t in topics if t not in known]
        if missing:
            raise TopicNotFoundError(
                f"topic(s) {', '.join(missing)} not in bag {self.path}; the bag has:\n"
                + self.describe_topics())
        wanted = set(topics)
        return [c for c in conns if c.topic in wanted]

    def count(self, topics: Sequence[str] | None = None) -> int:
        """Number of messages on ``topics`` (all when None/empty)."""
        return sum(c.msgcount for c in self.connections(topics))

    def messages(self, topics: Sequence[str] | None = None) -> Iterator[BagMessage]:
        """Deserialised messages of ``topics`` in recording-time order."""
        reader = self.reader
        for conn, timestamp, raw in reader.messages(connections=self.connections(topics)):
            yield BagMessage(conn.topic, conn.msgtype, int(timestamp), reader.deserialize(raw, conn.msgtype))


# --- helpers shared by the players ----------------------------------------------------------------

def parse_remaps(items: Iterable[str] | None) -> dict[str, str]:
    """``['/a:=/b', ...]`` -> ``{'/a': '/b'}``; a malformed item raises :class:`ValueError`."""
    remaps = {}
    for item in items or ():
        old, sep, new = item.partition(':=')
        if not sep or not old.strip() or not new.strip():
            raise ValueError(f"bad remap '{item}': expected OLD:=NEW, e.g. /camera/image:=/image")
        remaps[old.strip()] = new.strip()
    return remaps


def message_class_path(msgtype: str) -> tuple[str, str]:
    """``'sensor_msgs/msg/Image'`` -> ``('sensor_msgs.msg', 'Image')`` (also ``pkg/Name`` forms)."""
    parts = [p for p in msgtype.replace('::', '/').split('/') if p]
    if len(parts) == 2:
        parts.insert(1, 'msg')
    valid = len(parts) == 3 and parts[1] in ('msg', 'srv', 'action') and all(p.isidentifier() for p in parts)
    if not valid:
        raise ValueError(f"not a ROS message type name: '{msgtype}'")
    return f'{parts[0]}.{parts[1]}', parts[2]


class PlaybackSchedule:
    """Maps recording times to wall-clock deadlines for playback at ``rate`` x real time.

    ``deadline(t_ns)`` is ``wall_start + (t_ns - bag_start_ns) / rate`` seconds; :meth:`restart`
    starts a new loop from the bag's beginning.
    """

    def __init__(self, bag_start_ns: int, rate: float, wall_start: float):
        """``rate`` must be > 0 (2.0 = twice as fast as recorded)."""
        if not rate > 0:
            raise ValueError(f'rate must be > 0, got {rate}')
        self.bag_start_ns = int(bag_start_ns)
        self.rate = float(rate)
        self.wall_start = float(wall_start)

    def deadline(self, timestamp_ns: int) -> float:
        """Wall-clock time (same clock as ``wall_start``) at which to publish a message."""
        return self.wall_start + (int(timestamp_ns) - self.bag_start_ns) * 1e-9 / self.rate

    def bag_time_ns(self, wall: float) -> int:
        """Recording time corresponding to a wall-clock time (for a simulated clock)."""
        return self.bag_start_ns + round((wall - self.wall_start) * self.rate * 1e9)

    def restart(self, wall_start: float) -> None:
        """Start the schedule again at ``wall_start`` (next loop)."""
        self.wall_start = float(wall_start)
