"""Overlap of loading, device compute and write-back through bounded queues.

``run_overlapped(items, load, compute, store)`` runs ``load`` in a prefetch thread and
``store`` in a writer thread around ``compute`` on the caller's thread; queues hold at
most ``depth`` items, so memory is bounded (back-pressure, never unbounded buffering).
Any exception in a thread stops the others and is re-raised in the caller.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterable

_END = object()


def _put(q: queue.Queue, item: Any, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, stop: threading.Event) -> Any:
    while not stop.is_set():
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            continue
    return _END


def run_overlapped(items: Iterable[Any], load: Callable[[Any], Any], compute: Callable[[Any, Any], Any],
                   store: Callable[[Any, Any], None], depth: int = 2) -> None:
    """For each item: ``store(item, compute(item, load(item)))``, the three stages overlapped."""
    loaded: queue.Queue = queue.Queue(maxsize=depth)
    computed: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    errors: list[BaseException] = []

    def guard(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as exc:  # re-raised in the caller
                errors.append(exc)
                stop.set()
        return run

    def loader() -> None:
        for item in items:
            if not _put(loaded, (item, load(item)), stop):
                return
        _put(loaded, _END, stop)

    def writer() -> None:
        while (entry := _get(computed, stop)) is not _END:
            store(*entry)

    threads = [threading.Thread(target=guard(loader), daemon=True),
               threading.Thread(target=guard(writer), daemon=True)]
    for t in threads:
        t.start()
    try:
        while (entry := _get(loaded, stop)) is not _END:
            item, data = entry
            if not _put(computed, (item, compute(item, data)), stop):
                break
        _put(computed, _END, stop)
    except BaseException:
        stop.set()
        raise
    finally:
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
