"""`genshop train` and `genshop sample`: options, recipes, errors, resume and load_run."""

import json
import re

import numpy as np
import PIL.Image
import pytest
import torch

import genshop
from genshop.cli import main
from genshop.config import RunConfig, to_json
from genshop.engine import configure
from genshop.errors import BadInputError, DataError
from genshop.families.gan import RECIPES, GanConfig
from genshop.runs import load_run

SMALL = ["--width", "8", "--depth", "1", "--batch-size", "32", "--threads", "1",
         "--sample-every", "5", "--quiet"]


def dry_run(capsys, *argv) -> dict:
    assert main(["train", "gan", *argv, "--dry-run"]) == 0
    return json.loads(capsys.readouterr().out)


def test_dry_run_applies_recipe_then_user_options(capsys):
    config = dry_run(capsys, "--data", "grid25", "--loss", "rasgan", "--width", "16")
    assert config["family"] == "gan" and config["loss"] == "rasgan"
    assert config["width"] == 16  # typed by the user: beats the recipe
    assert config["steps"] == RECIPES["grid25"]["steps"] != GanConfig.steps  # from the recipe
    assert config["lr_g"] == RECIPES["grid25"]["lr_g"]
    assert dry_run(capsys, "--no-batch-norm", "--update", "fused")["update"] == "fused"


def test_fused_runs_take_the_recipes_part_for_their_step(capsys):
    """The ring's recipe slows the generator down for the (simultaneous) fused step only."""
    fused = dry_run(capsys, "--data", "ring8", "--update", "fused")
    assert fused["lr_g"] == 5e-4 != RECIPES["ring8"]["lr_g"] == 1e-3 == fused["lr_d"]
    assert dry_run(capsys, "--data", "ring8")["lr_g"] == 1e-3  # alternating: the plain recipe
    assert dry_run(capsys, "--data", "grid25", "--update", "fused")["lr_g"] == 1e-3  # no fused part
    typed = dry_run(capsys, "--data", "ring8", "--update", "fused", "--lr-g", "2e-3")
    assert typed["lr_g"] == 2e-3  # the user's option beats both parts of the recipe
    assert "by_update" not in fused
    mnist = genshop.configure("gan", data="mnist", update="fused")
    assert mnist.lr_g == RECIPES["mnist"]["lr_g"] != fused["lr_g"]  # no fused part: as it is


def test_recipe_does_not_override_an_explicit_default_value():
    config = genshop.configure("gan", data="ring8", r1=0.0)
    assert config.r1 == 0.0 == GanConfig.r1 and RECIPES["ring8"]["r1"] == 0.1


def test_train_is_the_python_twin_of_the_command(tmp_path, capsys):
    config = configure("gan", steps=3, width=8, depth=1, batch_size=16, out=str(tmp_path / "r"))
    assert main(["train", "gan", "--steps", "3", "--width", "8", "--depth", "1",
                 "--batch-size", "16", "--out", str(tmp_path / "r"), "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(to_json(config, "gan"))
    result = genshop.train(config, progress=False)
    run = load_run(result.run_dir)
    assert result.step == run.step == 3 and not result.interrupted
    assert run.config.threads == 1 == GanConfig.threads  # the fast default
    assert run.config.lr_g == RECIPES["ring8"]["lr_g"] and run.config.width == 8
    torch.testing.assert_close(result.sample(7, seed=1), run.sample(7, seed=1), rtol=0, atol=0)


def test_the_engine_writes_data_and_the_report_command_draws_the_page(tmp_path, capsys):
    run_dir = tmp_path / "r"
    genshop.train(configure("gan", steps=4, width=8, depth=1, batch_size=16, log_every=2,
                            sample_every=2, out=str(run_dir)), progress=False)
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock", "checkpoint.pt",
                                                         "config.json", "metrics.jsonl",
                                                         "samples"]
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"step": 6, "d_lo')  # a line torn by a kill
    assert main(["report", str(run_dir)]) == 0
    page = (run_dir / "index.html").read_text()
    assert "Last logged step (4)" in page and "samples/step_0000004.png" in page
    assert str(run_dir / "index.html") in capsys.readouterr().out
    assert main(["report", str(tmp_path / "none")]) == 2
    assert main(["report", str(tmp_path)]) == 2  # a folder that is no run
    assert "config.json is missing" in capsys.readouterr().err


def test_train_needs_a_family_config(tmp_path):
    with pytest.raises(BadInputError, match="is no family's config"):
        genshop.train(RunConfig(out=str(tmp_path)), progress=False)


@pytest.mark.parametrize(("argv", "message"), [
    (["--loss", "nosuch"], "unknown loss 'nosuch'; choose one of: .*rasgan"),
    (["--data", "ring9"], "unknown data set 'ring9'; choose one of: grid25, mnist, ring8"),
    (["--update", "both"], "invalid choice: 'both' \\(choose from '?alternating'?, '?fused'?\\)"),
])
def test_bad_names_fail_in_one_line_with_the_choices(capsys, argv, message):
    try:
        code = main(["train", "gan", *argv, "--dry-run"])
    except SystemExit as exit_:  # argparse's own usage errors
        code = exit_.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert re.search(message, err), err


def test_train_sample_and_load_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "gan", "--steps", "10", "--ema", "0.5", *SMALL, "--out", str(run)]) == 0
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step_0000005.png",
                                                                   "step_0000010.png"]
    page = (run / "index.html").read_text()
    assert "samples/step_0000010.png" in page and "Last logged step (10)" in page
    assert (run / "curves.png").stat().st_size > 1000
    assert main(["sample", str(run), "-n", "300", "--seed", "4",
                 "--out", str(tmp_path / "s.npy")]) == 0
    x = np.load(tmp_path / "s.npy")
    assert x.dtype == np.float32 and x.shape == (300, 2)
    assert main(["sample", str(run), "-n", "300", "--out", str(tmp_path / "s.png")]) == 0
    with PIL.Image.open(tmp_path / "s.png") as picture:
        assert picture.format == "PNG" and min(picture.size) >= 200  # a drawn plot
    assert main(["sample", str(run), "--out", str(tmp_path / "s.txt")]) == 2
    assert "--out must name a file ending in .npy or .png" in capsys.readouterr().err
    loaded = genshop.load_run(run)  # the package-level entry point of DESIGN.md
    assert loaded.step == 10 and loaded.config.ema == 0.5
    np.testing.assert_array_equal(loaded.sample(300, seed=4).numpy(), x)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    ema_w = state["ema"]["body.0.weight"]
    assert torch.equal(loaded.net.body[0].weight, ema_w)  # samples come from the EMA weights
    assert not torch.equal(ema_w, state["models"]["G"]["body.0.weight"])


def test_resume_continues_and_rejects_changed_options(tmp_path, capsys):
    run = str(tmp_path / "run")
    assert main(["train", "gan", "--steps", "4", *SMALL, "--out", run]) == 0
    assert main(["train", "gan", "--steps", "4", *SMALL, "--out", run]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "gan", "--resume", "--loss", "hinge", "--out", run]) == 2
    assert "loss differ" in capsys.readouterr().err
    assert main(["train", "gan", "--resume", "--steps", "6", "--quiet", "--out", run]) == 0
    assert load_run(run).step == 6


def test_resume_keeps_the_steps_of_a_cosine_schedule(tmp_path, capsys):
    run = str(tmp_path / "run")
    options = [*SMALL, "--lr-schedule", "cosine", "--out", run]
    assert main(["train", "gan", "--steps", "4", *options]) == 0
    assert main(["train", "gan", "--resume", "--steps", "6", "--out", run]) == 2
    assert "cosine learning-rate schedule spans the run's 4 steps" in capsys.readouterr().err
    assert main(["train", "gan", "--resume", "--steps", "4", "--quiet", "--out", run]) == 0


def test_missing_or_corrupt_run_directory(tmp_path, capsys):
    assert main(["sample", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "config.json").write_text("{broken")
    with pytest.raises(DataError, match="corrupt"):
        load_run(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"family": "gan", "data": "ring8"}))
    with pytest.raises(DataError, match="no checkpoint"):
        load_run(tmp_path)
    (tmp_path / "checkpoint.pt").write_bytes(b"garbage")
    with pytest.raises(DataError, match="corrupt"):
        load_run(tmp_path)


def test_help_shows_the_defaults_the_recipes_replace(capsys):
    with pytest.raises(SystemExit):
        main(["train", "gan", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 5000; ring8 recipe 7000, grid25 recipe 9000," in text
    assert "ring8 --update fused recipe 0.0005" in text


@pytest.mark.parametrize(("argv", "message"), [
    (["--lr-g", "-1"], r"option lr_g \(--lr-g\) must be > 0, got -1.0"),
    (["--ema", "1.5"], r"option ema \(--ema\) must be >= 0 and < 1, got 1.5"),
    (["--ema", "nan"], r"option ema \(--ema\) must be a finite number, got nan"),
    (["--steps", "0"], r"option steps \(--steps\) must be >= 1, got 0"),
    (["--batch-size", "-4"], r"option batch_size \(--batch-size\) must be >= 1, got -4"),
    (["--seed", str(2**64)], r"option seed \(--seed\) must be >= 0 and <= 9223372036854775807"),
    (["--threads", "1000"], r"option threads \(--threads\) must be >= 0 and <= 256"),
    (["--device", "cuda:7"] if not torch.cuda.is_available() else ["--device", "tpu"],
     r"--device"),
    (["--device", "bogus"], r"--device 'bogus' is not a torch device"),
    (["--data", "notes.txt"], r"or a path ending in .npy"),
])
def test_bad_values_fail_before_any_work_in_one_line(tmp_path, capsys, argv, message):
    code = main(["train", "gan", *argv, "--quiet", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and re.search(message, err), err
    assert not (tmp_path / "r").exists()  # nothing was written


def test_out_must_be_a_new_or_empty_folder_or_a_run(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("my own file")
    assert main(["train", "gan", "--steps", "2", *SMALL, "--out", str(mine)]) == 2
    assert "not a genshop run" in capsys.readouterr().err
    assert sorted(p.name for p in mine.iterdir()) == ["thesis.tex"]
    assert main(["train", "gan", "--steps", "2", *SMALL, "--out", str(mine / "thesis.tex")]) == 2
    assert "is a file" in capsys.readouterr().err
    run = tmp_path / "run"
    assert main(["train", "gan", "--steps", "2", *SMALL, "--out", str(run)]) == 0
    assert main(["train", "flow", "--resume", "--out", str(run)]) == 2
    assert "holds a gan run, not a flow run" in capsys.readouterr().err
    assert main(["train", "gan", "--resume", "--steps", "1", "--out", str(run)]) == 2
    assert "at step 2, beyond --steps 1" in capsys.readouterr().err
    assert main(["train", "gan", "--resume", "--steps", "2", "--out", str(run)]) == 0
    assert "already at step 2" in capsys.readouterr().out


def test_sample_checks_its_count_and_output(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "gan", "--steps", "2", *SMALL, "--out", str(run)]) == 0
    for argv, message in ((["-n", "0"], "-n must be between 1 and 10,000,000, got 0"),
                          (["--out", str(tmp_path)], "--out must name a file ending in .npy")):
        assert main(["sample", str(run), *argv]) == 2
        assert message in capsys.readouterr().err


def test_bare_command_prints_usage_and_version_is_known(capsys):
    assert main([]) == 2
    assert "usage: genshop" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"genshop {genshop.__version__}"


def test_short_runs_with_the_recipes_ema_get_a_note(capsys):
    def note(*argv) -> str:
        assert main(["train", "gan", "--data", "ring8", *argv, "--dry-run"]) == 0
        return capsys.readouterr().err

    assert "initial weights still make up 14% of the averaged sampler after 2000 steps" in note(
        "--steps", "2000")
    assert note() == ""  # 0.999 ** 7000 = 0.09 %
    assert note("--steps", "2000", "--ema", "0") == ""
