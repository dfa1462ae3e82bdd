"""Progress from workers to the client: a worker's run writes its progress lines to a Dask topic,
and the client prints them, each prefixed by the work it belongs to."""

from __future__ import annotations

import json
import sys
from typing import IO

TOPIC = "rdengine-progress"


class TopicStream:
    """A text stream (for ``Progress``) that sends every line to the client as a Dask event."""

    def __init__(self, label: str):
        from distributed import get_worker

        self.label, self.worker = label, get_worker()
        self.pending = ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if line.strip():
                self.worker.log_event(TOPIC, {"label": self.label, "line": line})
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


class LabelledStream:
    """A text stream that writes each line to ``stream`` prefixed by ``[label]`` (a video the
    client itself drives among others)."""

    def __init__(self, label: str, stream: IO[str] | None = None):
        self.label, self.stream = label, stream or sys.stderr
        self.pending = ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if line.strip():
                self.stream.write(f"[{self.label}] {line}\n")
        self.stream.flush()
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return False


class ProgressPrinter:
    """Client side: prints the progress lines workers send (JSON lines gain a ``video`` field)."""

    def __init__(self, client, json_lines: bool, stream: IO[str] | None = None):
        self.client, self.json_lines = client, json_lines
        self.stream = stream or sys.stderr
        client.subscribe_topic(TOPIC, self)

    def __call__(self, event) -> None:
        _, message = event
        line = message["line"]
        if self.json_lines:
            try:
                line = json.dumps({"video": message["label"], **json.loads(line)}, separators=(", ", ": "))
            except ValueError:
                pass
        else:
            line = f"[{message['label']}] {line}"
        self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        self.client.unsubscribe_topic(TOPIC)
