"""Progress output (a bar on a terminal, plain lines in a log) and Ctrl-C as a stop request."""

import io
import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from genshop.progress import StopRequest, progress_bar

LOSSES = {"d_loss": 0.69, "g_loss": 0.71}


class Clock:
    """A clock that the test moves: `seconds_per_step` per finished step."""

    def __init__(self, seconds_per_step: float):
        self.seconds_per_step, self.steps = seconds_per_step, 0

    def __call__(self) -> float:
        return self.steps * self.seconds_per_step


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(total: int, seconds_per_step: float, *, initial: int = 0, until: int | None = None,
        stream=None, **options) -> str:
    """Steps `initial`…`until` (default `total`) of a `total`-step loop; what it wrote."""
    stream = io.StringIO() if stream is None else stream
    clock = Clock(seconds_per_step)
    clock.steps = initial
    with progress_bar(total, initial=initial, desc="gan ring8", stream=stream, clock=clock,
                      **options) as bar:
        for _ in range(initial, total if until is None else until):
            clock.steps += 1
            bar.set_values(LOSSES)
            bar.update()
    return stream.getvalue()


def steps_of(lines: list[str]) -> list[int]:
    return [int(line.split(": ")[1].split("/")[0]) for line in lines]


def test_a_redirected_run_writes_a_line_every_5_percent():
    out = run(10_000, 0.002)
    lines = out.splitlines()
    assert "\r" not in out and out.endswith("\n")
    assert steps_of(lines) == list(range(500, 10_001, 500))
    assert lines[0] == ("gan ring8: 500/10000 steps (5%), 500 it/s, ETA 0:00:19, "
                        "d_loss 0.69 g_loss 0.71")
    assert lines[-1].startswith("gan ring8: 10000/10000 steps (100%), 500 it/s, ETA 0:00:00, ")


def test_a_slow_run_writes_a_line_every_30_seconds_and_one_at_the_end():
    lines = run(10_000, 0.1, until=450).splitlines()
    assert steps_of(lines) == [300, 450]
    assert lines[0] == ("gan ring8: 300/10000 steps (3%), 10 it/s, ETA 0:16:10, "
                        "d_loss 0.69 g_loss 0.71")


def test_the_interval_is_a_parameter():
    assert steps_of(run(10_000, 0.1, until=450, interval=10).splitlines()) == [
        100, 200, 300, 400, 450]


def test_a_resumed_run_keeps_to_the_5_percent_marks_and_rates_only_its_own_steps():
    lines = run(10_000, 0.002, initial=2300).splitlines()
    assert steps_of(lines) == list(range(2500, 10_001, 500))
    assert lines[0].startswith("gan ring8: 2500/10000 steps (25%), 500 it/s, ETA 0:00:15, ")


def test_a_loop_that_raises_still_writes_where_it_stopped():
    stream = io.StringIO()
    with pytest.raises(RuntimeError), progress_bar(100, stream=stream) as bar:
        bar.update(7)
        raise RuntimeError
    assert stream.getvalue().startswith("7/100 steps (7%), ")
    assert stream.getvalue().count("\n") == 1


def test_a_terminal_gets_the_tqdm_bar_with_rate_and_values():
    out = run(100, 0.002, stream=Terminal())
    assert "\r" in out and "it/s" in out
    assert "100/100" in out and "d_loss=0.69, g_loss=0.71" in out
    assert "steps (" not in out  # not the log lines


@pytest.mark.parametrize("stream", [io.StringIO, Terminal])
def test_disabled_writes_nothing(stream):
    assert run(10_000, 0.002, stream=stream(), enabled=False) == ""
    assert run(10_000, 0.002, stream=stream()) != ""


def test_the_default_stream_is_stderr(capsys):
    with progress_bar(10) as bar:
        bar.update(10)
    captured = capsys.readouterr()
    assert captured.err.startswith("10/10 steps (100%), ") and captured.out == ""


@pytest.fixture
def sigint_kept():
    """Whatever SIGINT handler the test sets, the one found before is put back."""
    found = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, found)


def _previous(signum, frame):
    raise AssertionError("the handler in place before was called")


@pytest.mark.parametrize("previous", [_previous, signal.default_int_handler, signal.SIG_DFL])
def test_sigint_sets_the_flag_and_the_previous_handler_comes_back(sigint_kept, previous):
    signal.signal(signal.SIGINT, previous)
    stop = StopRequest()
    with stop.installed():
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested
    assert signal.getsignal(signal.SIGINT) is previous


def test_an_ignored_sigint_stays_ignored(sigint_kept):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = StopRequest()
    with stop.installed():
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGINT)
    assert not stop.requested and signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_a_handler_python_cannot_put_back_is_left_alone(monkeypatch):
    installed = []
    monkeypatch.setattr(signal, "getsignal", lambda signum: None)  # set outside Python
    monkeypatch.setattr(signal, "signal", lambda *args: installed.append(args))
    ran = False
    with StopRequest().installed():
        ran = True
    assert ran and installed == []


def test_off_the_main_thread_nothing_is_installed():
    found, seen, errors = signal.getsignal(signal.SIGINT), [], []

    def work():
        try:
            with StopRequest().installed():
                seen.append(signal.getsignal(signal.SIGINT))
        except Exception as err:
            errors.append(err)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert errors == [] and seen == [found] and signal.getsignal(signal.SIGINT) is found


LOOP = textwrap.dedent("""
    import os, signal
    from genshop.progress import StopRequest
    at_start = signal.getsignal(signal.SIGINT)
    stop, step = StopRequest(), 0
    with stop.installed():
        while step < 20 and not stop.requested:
            step += 1
            if step == 5:
                os.kill(os.getpid(), signal.SIGINT)
    after = signal.getsignal(signal.SIGINT)
    print(at_start is signal.SIG_IGN, step, after is at_start, after is signal.SIG_IGN)
""")


@pytest.mark.parametrize(("start", "printed"), [
    (signal.SIG_IGN, "True 20 True True"),  # a background job, nohup: never stopped
    (signal.SIG_DFL, "False 5 True False"),  # a foreground start: stopped after step 5
])
def test_a_loop_started_with_sigint_ignored_or_not(start, printed):
    child = subprocess.run([sys.executable, "-c", LOOP], capture_output=True, text=True,
                           timeout=60, preexec_fn=lambda: signal.signal(signal.SIGINT, start))
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == printed.split()
