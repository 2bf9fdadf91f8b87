"""A run directory nothing can break: one owner at a time, kills at any moment, damaged files.

Faults are injected by subprocess signals (kill -9 at a placed moment), by a second process on
the same folder, and by files written over; each must end in one clear line and lose nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from genshop import checkpoint
from genshop.cli import main
from genshop.engine import configure, train
from genshop.errors import BadInputError, DataError, TrainingDiverged
from genshop.runs import load_run, owned

SMALL = ["--width", "8", "--depth", "1", "--batch-size", "16", "--quiet", "--sample-every", "0"]


def test_a_second_process_on_the_same_folder_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    with owned(run):  # as if another process were training into it
        assert main(["train", "gan", "--steps", "3", *SMALL, "--out", str(run)]) == 2
        assert f"another process (pid {os.getpid()}) is training into {run}" in \
            capsys.readouterr().err
    assert main(["train", "gan", "--steps", "3", *SMALL, "--out", str(run)]) == 0


def test_a_killed_owner_leaves_no_stale_lock(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import time
            from genshop.runs import owned
            with owned({str(run)!r}):
                print("held", flush=True)
                time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(BadInputError, match="another process"), owned(run):
        pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with owned(run):  # the kernel released the dead process's lock
        assert (run / ".lock").read_text().strip() == str(os.getpid())


def test_two_concurrent_trainings_leave_one_usable_run(tmp_path):
    run = tmp_path / "run"
    argv = [sys.executable, "-m", "genshop", "train", "gan", "--steps", "1000000", *SMALL,
            "--log-every", "50", "--out", str(run)]
    first = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True,  # Ctrl-C in force
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not (run / "metrics.jsonl").is_file() and time.monotonic() < deadline:
        time.sleep(0.05)
    # The first run is training (far from its last step) while the second one starts.
    second = subprocess.run(argv, stderr=subprocess.PIPE, text=True)
    first.send_signal(signal.SIGINT)  # Ctrl-C: finish the step, checkpoint, exit 130
    assert first.wait(timeout=60) == 130
    assert second.returncode == 2 and "another process" in second.stderr
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(50, 50 * len(steps) + 1, 50))  # every logged step once
    assert steps[-1] <= load_run(run).step < steps[-1] + 50


def test_a_run_killed_before_its_first_checkpoint_starts_again_cleanly(tmp_path):
    run = tmp_path / "run"
    config = configure("gan", steps=20, width=8, depth=1, batch_size=16, log_every=5,
                       checkpoint_every=1000, sample_every=0, out=str(run))
    train(config, progress=False)
    (run / "checkpoint.pt").unlink()  # as if killed after logging steps 5…20, before saving
    train(config, progress=False)
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [5, 10, 15, 20]


def test_non_finite_weights_never_reach_a_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "gan", "--steps", "20", *SMALL, "--checkpoint-every", "1", "--out", str(run)]
    assert main([*argv[:2], "--lr-g", "1e300", *argv[2:]]) == 2
    assert "weights became NaN or infinite by step 1" in capsys.readouterr().err
    assert not (run / "checkpoint.pt").exists()
    with pytest.raises(TrainingDiverged, match=r"by step 3; .*last good checkpoint \(step 2\)"):
        config = configure("gan", steps=20, width=8, depth=1, batch_size=16, sample_every=0,
                           checkpoint_every=1, out=str(tmp_path / "late"))
        train(config, progress=False, family=_weights_break_at_step(3))
    state = torch.load(tmp_path / "late" / "checkpoint.pt", weights_only=True)
    assert state["step"] == 2
    assert all(t.isfinite().all() for t in state["models"]["G"].values())


def test_sampling_refuses_non_finite_weights(tmp_path):
    run = tmp_path / "run"
    train(configure("gan", steps=2, width=8, depth=1, batch_size=16, sample_every=0, ema=0.0,
                    out=str(run)), progress=False)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    state["models"]["G"]["body.0.weight"][0, 0] = float("nan")
    checkpoint.save_atomic(state, run / "checkpoint.pt")  # a valid digest: the weights are wrong
    with pytest.raises(DataError, match="1 NaN or infinite weights"):
        load_run(run)


def _weights_break_at_step(n: int):
    from genshop.families.gan import GanFamily

    class BreaksWeights(GanFamily):
        calls = 0

        def train_step(self, inp):
            out = super().train_step(inp)
            type(self).calls += 1
            if type(self).calls == n:
                with torch.no_grad():
                    next(self.G.parameters()).fill_(float("inf"))
            return out

    return BreaksWeights


def _small_run(run, steps=3):
    train(configure("gan", steps=steps, width=8, depth=1, batch_size=16, sample_every=0,
                    out=str(run)), progress=False)


def test_flipped_bytes_inside_tensor_data_are_refused(tmp_path, capsys):
    run = tmp_path / "run"
    _small_run(run)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    weight = state["models"]["G"]["body.0.weight"].contiguous().numpy().tobytes()
    raw = bytearray((run / "checkpoint.pt").read_bytes())
    at = raw.find(weight)
    assert at > 0 and raw.count(weight) == 1  # the tensor's bytes lie in the file as they are
    raw[at + 5] ^= 0x10
    (run / "checkpoint.pt").write_bytes(bytes(raw))
    changed = torch.load(run / "checkpoint.pt", weights_only=True)  # torch itself sees nothing
    assert not torch.equal(changed["models"]["G"]["body.0.weight"],
                           state["models"]["G"]["body.0.weight"])
    for argv in (["sample", str(run), "-n", "4", "--out", str(tmp_path / "s.npy")],
                 ["train", "gan", "--steps", "5", "--width", "8", "--depth", "1",
                  "--batch-size", "16", "--quiet", "--out", str(run), "--resume"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "does not match its digest" in err, err
    assert not (tmp_path / "s.npy").exists()


@pytest.mark.parametrize(("change", "message", "samples"), [
    (lambda s: torch.arange(3), "not a genshop checkpoint", False),
    (lambda s: {**s, "step": "abc"}, "holds no step count or no model weights", False),
    (lambda s: {k: v for k, v in s.items() if k != "models"}, "no model weights", False),
    (lambda s: {**s, "models": {**s["models"], "G": {}}}, "does not fit its config", False),
    # sampling needs no optimiser state; resuming does
    (lambda s: {k: v for k, v in s.items() if k != "optimizers"}, "does not fit its config",
     True),
])
def test_a_checkpoint_of_the_wrong_content_gives_one_line_to_resume_and_sample(
        tmp_path, capsys, change, message, samples):
    run = tmp_path / "run"
    _small_run(run)
    state = checkpoint.load(run / "checkpoint.pt")
    new = change(state)
    if isinstance(new, dict):
        checkpoint.save_atomic(new, run / "checkpoint.pt")
    else:
        torch.save(new, run / "checkpoint.pt")
    resume = ["train", "gan", "--steps", "5", "--width", "8", "--depth", "1",
              "--batch-size", "16", "--quiet", "--out", str(run), "--resume"]
    sample = ["sample", str(run), "-n", "4", "--out", str(tmp_path / "s.npy")]
    code = main(resume)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    code = main(sample)
    err = capsys.readouterr().err.strip()
    if samples:
        assert code == 0 and (tmp_path / "s.npy").is_file()
    else:
        assert code == 2 and len(err.splitlines()) == 1 and message in err, err


def test_a_checkpoint_of_another_width_gives_one_line(tmp_path, capsys):
    run, other = tmp_path / "run", tmp_path / "other"
    _small_run(run)
    train(configure("gan", steps=3, width=16, depth=1, batch_size=16, sample_every=0,
                    out=str(other)), progress=False)
    (run / "checkpoint.pt").write_bytes((other / "checkpoint.pt").read_bytes())
    for argv in (["train", "gan", "--steps", "5", "--width", "8", "--depth", "1",
                  "--batch-size", "16", "--quiet", "--out", str(run), "--resume"],
                 ["sample", str(run), "-n", "4", "--out", str(tmp_path / "s.npy")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "does not fit its config.json" in err, err


def test_temporary_files_of_a_killed_owner_are_removed_by_the_next(tmp_path):
    run = tmp_path / "run"
    _small_run(run)
    left = run / ".checkpoint.pt.abc123.tmp"
    left.write_bytes(b"half a checkpoint")
    train(configure("gan", steps=5, width=8, depth=1, batch_size=16, sample_every=0,
                    out=str(run)), resume=True, progress=False)
    assert not left.exists() and load_run(run).step == 5
