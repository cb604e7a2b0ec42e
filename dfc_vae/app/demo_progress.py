"""The demo's progress lines: each step's number, the time since the start, and the time left for the whole demo.

The time left is what the steps still to come cost on a reference machine (the 2-core AMD EPYC without AMX of
docs/demo.md, bf16), scaled by how fast this machine has been on the steps measured so far; while training runs, its
measured step rate replaces the estimate of training's own remaining steps.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

# Reference costs, in seconds, of the demo's steps per unit of work: the defaults took synth 30 s, training 626 s
# (17,070 steps of batch 8, 5 epochs), classifier 43 s (2 epochs) and figures 36 s there (docs/demo.md).
SYNTH_PER_FACE = 30 / 34000
TRAIN_STEP_FIXED = 0.0145  # a training step's cost at 32x32: a fixed part, plus one per image of the batch
TRAIN_STEP_PER_IMAGE = 0.0026
EPOCH_END = 5.0  # calibration, held-out evaluation, grids and checkpoint
CLASSIFIER_PER_IMAGE = 43 / (2 * 27316)  # per training image and epoch
FIGURE_PER_FACE = 12 / 300  # each of Figure 5, Figure 6 and the prior gap, per face per row kind
# The twins and the edit benchmark (steps 9 and 10), per twin and per face edited with one vector method: the seed-0
# demo's 200 twins took 1 s and its 400 edits 4 s on a 2-core AMD EPYC without native bf16 (docs/demo.md)
TWIN_PER_TWIN = 0.005
EDIT_PER_FACE = 0.01
SAMPLES = 25.0  # the prior fitted and the samples measured (app/demo_samples.py: bounded, whatever the settings)
TRAIN_SHARE = 0.8  # the training split's share of the faces (CelebA's proportions)
MIN_MEASURED = 5.0  # steps shorter than this (a reused dataset, a cached choice) say nothing about the machine's speed


@dataclass
class DemoWork:
    """How much work each of the demo's steps has: what the estimates are made from."""

    faces: int
    epochs: int
    batch_size: int
    classifier_epochs: int
    faces_per_edit: int
    classifier_on_reconstructions: bool = False  # an epoch of the classifier is then twice the images

    def train_steps(self) -> int:
        return self.epochs * -(-round(TRAIN_SHARE * self.faces) // self.batch_size)

    def step_seconds(self) -> float:
        return TRAIN_STEP_FIXED + TRAIN_STEP_PER_IMAGE * self.batch_size

    def estimates(self) -> dict[str, float]:
        """Step name -> its seconds on the reference machine."""
        return {"synth": SYNTH_PER_FACE * self.faces,
                "train": self.train_steps() * self.step_seconds() + EPOCH_END * self.epochs,
                "attribute_vectors": 2.0,
                "classifier": (CLASSIFIER_PER_IMAGE * TRAIN_SHARE * self.faces * self.classifier_epochs
                               * (2 if self.classifier_on_reconstructions else 1)),
                **{k: FIGURE_PER_FACE * self.faces_per_edit for k in ("fig5", "fig6", "prior_gap")},
                "samples": SAMPLES}


def duration(seconds: float) -> str:
    """12s, 3m05s, 1h02m."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    """The demo's numbered progress lines ("[3/8 42s, ~5m10s left] ...") and the seconds each timed step took."""

    def __init__(self, say, work: DemoWork, total: int = 8, clock=time.perf_counter):
        self.say, self.clock, self.total = say, clock, total
        self.t0 = clock()
        self.times: dict[str, float] = {}
        self.left = work.estimates()  # the steps not yet done -> their reference seconds
        self.step_seconds = work.step_seconds()
        self.measured = [0.0, 0.0]  # seconds taken and reference seconds, over the steps that tell the speed
        self._training: tuple[float, int] | None = None  # (time, step) of training's first progress report
        self._said = 0.0

    def speed(self) -> float:
        """This machine's seconds per reference second, so far (1 before anything is measured)."""
        taken, reference = self.measured
        return taken / reference if reference else 1.0

    def remaining(self, skip: str | None = None) -> float:
        return self.speed() * sum(v for k, v in self.left.items() if k != skip)

    def elapsed(self) -> float:
        return self.clock() - self.t0

    def line(self, k: int, text: str) -> str:
        return f"[{k}/{self.total} {duration(self.elapsed())}, ~{duration(self.remaining())} left] {text}"

    @contextlib.contextmanager
    def step(self, k: int, text: str, timed: str | None = None, estimate: str | None = None):
        """Step k: its line first; afterwards its time (under `timed`) and, when it had an estimate
        (`estimate`, default `timed`) and took long enough, what it says about the machine's speed."""
        self.say(self.line(k, text))
        t = self.clock()
        yield
        taken = self.clock() - t
        if timed:
            self.times[timed] = round(taken, 1)
        reference = self.left.pop(estimate or timed, None)
        if reference and taken >= MIN_MEASURED:
            self.measured[0] += taken
            self.measured[1] += reference

    def training(self, step: int, total: int, every: float = 60.0) -> None:
        """Training's progress (optimizer `step` of `total`), at most one line per `every` seconds: the step rate
        measured since its first report, and the time left from it and the steps after training."""
        now = self.clock()
        if self._training is None:
            self._training, self._said = (now, step), now
            return
        t_first, s_first = self._training
        if now - self._said < every or step <= s_first or step >= total:
            return
        self._said = now
        rate = (step - s_first) / (now - t_first)
        # the machine's speed from training so far, for the steps after it
        taken, reference = self.measured[0] + now - t_first, self.measured[1] + (step - s_first) * self.step_seconds
        after = taken / reference * sum(v for k, v in self.left.items() if k != "train")
        self.say(f"      training: step {step}/{total}, {rate:.1f} steps/s; {duration(self.elapsed())} elapsed, "
                 f"~{duration((total - step) / rate + after)} left")

    def wall(self) -> float:
        return self.elapsed()


def twin_estimates(faces_per_direction: int, attributes: int, methods: int) -> dict[str, float]:
    """Step name -> reference seconds of the twins (two directions per attribute) and of their edit benchmark."""
    twins = 2 * attributes * faces_per_direction
    return {"twins": TWIN_PER_TWIN * twins, "edits": EDIT_PER_FACE * twins * methods}
