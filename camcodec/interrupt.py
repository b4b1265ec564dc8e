"""Ctrl-C that lets a training step finish: the encode then saves its checkpoint and stops cleanly."""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any


class DeferredInterrupt:
    """While active, a Ctrl-C (SIGINT) that arrives during a training step (``deferring``) is noted in
    ``requested`` for the loop to act on after the step, so that the state it saves is whole; one that
    arrives anywhere else, or a second one, raises KeyboardInterrupt at once as usual.

    Only the main thread can take signals: elsewhere (a Dask worker's thread) this does nothing.
    """

    def __init__(self) -> None:
        self.requested = False
        self.deferring = False
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> DeferredInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.deferring and not self.requested:
            self.requested = True
            return
        raise KeyboardInterrupt
