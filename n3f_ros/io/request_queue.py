"""A bounded queue of requests drained by one worker thread (no rclpy).

The node's query topics (``query/point``, ``query/name``, ``prototypes/save``) only ``put`` here,
which never blocks, so a slow answer (seconds on a busy CPU) cannot make DDS drop the requests
queued behind it; the worker answers them one at a time, in arrival order (so a ``prototypes/save``
applies to the query before it). When the queue is full the *oldest* waiting request is dropped,
counted (``dropped``) and reported to ``on_drop`` — never silently. Exceptions of a handler are
passed to ``on_error`` and the worker goes on.
"""
from __future__ import annotations

import collections
import threading


class RequestQueue:
    """``put(name, fn, *args)`` -> runs ``fn(*args)`` on the worker thread (see module docstring)."""

    def __init__(self, maxsize: int = 64, on_drop=None, on_error=None, name: str = 'n3f_requests'):
        self.maxsize = int(maxsize)
        self.on_drop, self.on_error = on_drop, on_error
        self.dropped = 0
        self.done = 0
        self._items: collections.deque = collections.deque()
        self._cv = threading.Condition()
        self._running = True
        self._busy = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, name: str, fn, *args) -> bool:
        """Queue a request; False when an older one had to be dropped to make room."""
        dropped = None
        with self._cv:
            if len(self._items) >= self.maxsize:
                dropped = self._items.popleft()[0]
                self.dropped += 1
            self._items.append((name, fn, args))
            self._cv.notify()
        if dropped is not None and self.on_drop is not None:
            self.on_drop(dropped)
        return dropped is None

    def idle(self) -> bool:
        """Nothing waiting and nothing running."""
        with self._cv:
            return not self._items and not self._busy

    def _run(self) -> None:
        while True:
            with self._cv:
                while self._running and not self._items:
                    self._cv.wait()
                if not self._running:
                    return
                name, fn, args = self._items.popleft()
                self._busy = True
            try:
                fn(*args)
            except Exception as e:  # noqa: BLE001 - one bad request must not stop the others
                if self.on_error is not None:
                    self.on_error(name, e)
            finally:
                with self._cv:
                    self._busy = False
                    self.done += 1

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the worker (requests still waiting are discarded)."""
        with self._cv:
            self._running = False
            self._items.clear()
            self._cv.notify_all()
        self._thread.join(timeout)
