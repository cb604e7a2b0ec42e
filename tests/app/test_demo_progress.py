"""The demo's progress lines: the time since the start and an estimate of the time left, from the measured speed."""

import argparse

from dfc_vae.app.demo import DemoSettings
from dfc_vae.app.demo_progress import DemoWork, Progress, duration
from dfc_vae.runs.config import add_setting_flags, given_settings
from dfc_vae.cli import main


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_the_estimate_follows_the_measured_speed():
    clock, said = _Clock(), []
    work = DemoWork(faces=34000, epochs=2, batch_size=32, classifier_epochs=1, faces_per_edit=300)
    p = Progress(said.append, work, clock=clock)
    first = p.remaining()
    assert first == sum(work.estimates().values())
    with p.step(1, "rendering", "synth"):
        clock.now += 2 * work.estimates()["synth"]  # this machine: twice as slow as the reference
    assert said[0].startswith("[1/8 0s, ~") and "left] rendering" in said[0]
    assert p.speed() == 2.0 and p.remaining() == 2 * (first - work.estimates()["synth"])
    with p.step(3, "training", "train"):
        p.training(0, 100)  # the first report starts the rate's clock
        clock.now += 10
        p.training(50, 100, every=0)  # 5 steps/s: 10 s of training left, and the later steps at the speed so far
        assert said[-1].startswith("      training: step 50/100, 5.0 steps/s;")
        clock.now += 10
    assert said[1].startswith(f"[3/8 {duration(2 * work.estimates()['synth'])}, ~")
    assert p.times == {"synth": round(2 * work.estimates()["synth"], 1), "train": 20.0}


def test_a_step_too_short_to_measure_leaves_the_speed_alone():
    clock = _Clock()
    p = Progress(lambda line: None, DemoWork(34000, 2, 32, 1, 300), clock=clock)
    with p.step(1, "rendering (reused)", "synth"):
        clock.now += 0.1
    assert p.speed() == 1.0 and "synth" not in p.left


def test_durations_read_as_minutes_and_seconds():
    assert [duration(s) for s in (0, 59.4, 61, 3599, 3720)] == ["0s", "59s", "1m01s", "59m59s", "1h02m"]


def test_demo_help_lists_its_settings(capsys):
    try:
        main(["demo", "--help"])
    except SystemExit:
        pass
    text = capsys.readouterr().out
    for flag in ("--seed", "--epochs", "--batch-size", "--lr-schedule", "--warmup-steps", "--classifier-epochs"):
        assert flag in text
    assert "(default:" in text


def test_the_classifier_recipe_before_reconstructions_stays_reachable_by_flags():
    parser = argparse.ArgumentParser()
    add_setting_flags(parser, DemoSettings)
    old = DemoSettings(**given_settings(DemoSettings, parser.parse_args(
        ["--no-classifier-on-reconstructions", "--classifier-epochs", "2"])))
    assert (old.classifier_on_reconstructions, old.classifier_epochs) == (False, 2)
    assert DemoSettings().classifier_on_reconstructions is True
    # the classifier's estimated time counts the reconstructions it trains on
    a, b = (DemoWork(34000, 5, 8, 1, 300, on).estimates()["classifier"] for on in (False, True))
    assert b == 2 * a
