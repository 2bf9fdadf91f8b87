"""Progress of a long loop and Ctrl-C as a request to stop it between steps.

`progress_bar(total, ...)` shows a tqdm bar (rate, ETA, the latest values) when its stream is a
terminal. Anywhere else (stderr redirected to a file, a CI log, a pipe) a bar's carriage-return
redraws would fill the log, so it writes a plain line instead whenever 30 s have passed since
the last one or the count passes a 5 % mark of the total (5 %, 10 %, …), and one at the end:

    gan ring8: 500/10000 steps (5%), 812 it/s, ETA 0:00:12, d_loss 0.69 g_loss 0.71

`StopRequest().installed()` routes SIGINT to a flag (`requested`) that the loop reads between
steps, then puts back exactly the handler it found. It changes nothing where SIGINT is ignored
(a background job, `nohup`: the start chose that), where the handler cannot be put back (one
installed outside Python) or off the main thread (Python lets only the main thread set one).
"""

from __future__ import annotations

import contextlib
import datetime
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TextIO

from tqdm import tqdm

LINE_INTERVAL_S = 30.0  # a log line at least this often
LINE_FRACTION = 0.05  # and at every further 5 % of the total


class Progress:
    """What a loop reports its progress to; this base class shows nothing."""

    def update(self, n: int = 1) -> None:
        """`n` more steps are done."""

    def set_values(self, values: Mapping[str, float]) -> None:
        """The numbers shown beside the step count from now on (the latest losses, say)."""

    def close(self) -> None:
        """The loop has ended."""


class _Bar(Progress):
    def __init__(self, total: int, initial: int, desc: str, stream: TextIO):
        self.bar = tqdm(total=total, initial=initial, desc=desc, file=stream,
                        dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        self.bar.update(n)

    def set_values(self, values: Mapping[str, float]) -> None:
        self.bar.set_postfix({k: f"{v:.3g}" for k, v in values.items()}, refresh=False)

    def close(self) -> None:
        self.bar.close()


class _Lines(Progress):
    """A plain line `interval` seconds after the last one or at each multiple of
    `LINE_FRACTION` of the total, whichever comes first, and one at the end."""

    def __init__(self, total: int, initial: int, desc: str, stream: TextIO,
                 clock: Callable[[], float], interval: float):
        self.total, self.n, self.desc, self.stream = total, initial, desc, stream
        self.clock, self.interval = clock, interval
        self.every = max(1, round(total * LINE_FRACTION))
        self.values: dict[str, float] = {}
        self.start_n, self.start = initial, clock()
        self.written_n, self.written_at = initial, self.start

    def update(self, n: int = 1) -> None:
        before, self.n = self.n, self.n + n
        now = self.clock()
        if self.n // self.every > before // self.every or now - self.written_at >= self.interval:
            self._write(now)

    def set_values(self, values: Mapping[str, float]) -> None:
        self.values = dict(values)

    def close(self) -> None:
        if self.n != self.written_n:
            self._write(self.clock())

    def _write(self, now: float) -> None:
        self.stream.write(self.line(now) + "\n")
        self.stream.flush()
        self.written_n, self.written_at = self.n, now

    def line(self, now: float) -> str:
        parts = [f"{self.n}/{self.total} steps ({100 * self.n // self.total}%)"]
        elapsed = now - self.start
        if elapsed > 0 and self.n > self.start_n:
            rate = (self.n - self.start_n) / elapsed
            eta = datetime.timedelta(seconds=round((self.total - self.n) / rate))
            parts += [f"{_rate(rate)} it/s", f"ETA {eta}"]
        if self.values:
            parts.append(" ".join(f"{k} {v:.3g}" for k, v in self.values.items()))
        return (f"{self.desc}: " if self.desc else "") + ", ".join(parts)


def _rate(rate: float) -> str:
    return f"{rate:.0f}" if rate >= 10 else f"{rate:.2g}"


@contextlib.contextmanager
def progress_bar(total: int, *, initial: int = 0, desc: str = "", enabled: bool = True,
                 stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic,
                 interval: float = LINE_INTERVAL_S) -> Iterator[Progress]:
    """The progress of a loop of `total` steps, `initial` of them done already, on `stream`
    (default `sys.stderr`): a tqdm bar if `stream.isatty()`, else a plain line every `interval`
    seconds of `clock` or every 5 % of `total`, whichever comes first, and one at the end.
    `enabled=False` shows nothing. Closed on leaving the block, an exception included."""
    stream = sys.stderr if stream is None else stream
    if not enabled:
        shown = Progress()
    elif stream.isatty():
        shown = _Bar(total, initial, desc, stream)
    else:
        shown = _Lines(total, initial, desc, stream, clock, interval)
    try:
        yield shown
    finally:
        shown.close()


class StopRequest:
    """SIGINT sets `requested`, which a loop checks between steps (see the module docstring)."""

    def __init__(self):
        self.requested = False

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        previous = signal.getsignal(signal.SIGINT)
        if previous is signal.SIG_IGN or previous is None:  # ignored, or not Python's to set
            yield
            return
        try:
            signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: leave Ctrl-C as it is
            yield
            return
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True
