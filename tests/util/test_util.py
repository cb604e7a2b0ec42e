"""The shared pieces of dfc_vae/util and commands/_common: allowed values, the output-folder check, markdown
tables, the machine's description, the torchrun command line, the flags several commands share and their
ranges, an error's one line (under an open progress bar too), and the pictures: figures, grids, captions."""

import argparse
import os
import sys

import numpy as np
import pytest
import torch

from dfc_vae.cli import main
from dfc_vae.util import choices, machine
from dfc_vae.util.errors import UserError
from dfc_vae.util.fileio import output_folder
from dfc_vae.util.launch import TORCHRUN_VARIABLES, launch_env, torchrun_command
from dfc_vae.util.tables import markdown_table

AMX_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8
"""
AVX2_CPUINFO = """processor\t: 0
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse2 avx2 fma
"""


def test_the_allowed_values_have_one_home():
    from dfc_vae.runs.config import TrainConfig
    from dfc_vae.util import device

    assert device.DEVICES is choices.DEVICES == ("auto", "cpu", "cuda")
    assert choices.PRECISIONS == ("auto", "bf16", "fp32")
    assert choices.SPLIT_NAMES == tuple(choices.SPLITS) == ("train", "valid", "test")
    assert choices.SPLITS == {"train": 0, "valid": 1, "test": 2}
    meta = {f.name: f.metadata for f in TrainConfig.__dataclass_fields__.values()}
    assert meta["device"]["choices"] is choices.DEVICES and meta["precision"]["choices"] is choices.PRECISIONS


def test_output_folder_refuses_a_file_and_passes_a_folder_or_a_new_path(tmp_path):
    assert output_folder(tmp_path) == tmp_path
    assert output_folder(str(tmp_path / "new")) == tmp_path / "new"
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(UserError) as e:
        output_folder(tmp_path / "f.txt")
    assert str(e.value) == f"--out {tmp_path / 'f.txt'} is a file; give a folder"
    with pytest.raises(UserError, match=r"^--work .* is a file; give a folder for the report$"):
        output_folder(tmp_path / "f.txt", "--work", " for the report")


def test_markdown_table_default_and_aligned():
    rows = [("a", 1, 2.5), ("b", "x|y", None)]
    assert markdown_table(["name", "n", "v"], rows) == [
        "| name | n | v |", "|---|---|---|", "| a | 1 | 2.5 |", "| b | x|y | None |"]
    assert markdown_table(["name", "n", "v"], rows, align=("", "right", "center"))[1] == "|---|---:|:---:|"
    assert markdown_table(["a", "b"], [], align=["left", ""]) == ["| a | b |", "|:---|---|"]
    with pytest.raises(ValueError, match="per column"):
        markdown_table(["a", "b"], [], align=("right",))
    with pytest.raises(ValueError, match="per column"):
        markdown_table(["a"], [], align=("middle",))


def test_the_cpu_is_described_from_proc_cpuinfo(tmp_path, monkeypatch):
    info = tmp_path / "cpuinfo"
    monkeypatch.setattr(machine, "CPUINFO", info)
    info.write_text(AMX_CPUINFO)
    assert machine.cpu_model() == "Intel(R) Xeon(R) Platinum 8480+"
    assert {"amx_bf16", "avx512_bf16"} <= machine.cpu_flags()
    assert machine.cpu_bf16() == (True, True)
    assert "(AMX, native bf16)" in machine.describe_machine("cpu")
    info.write_text(AVX2_CPUINFO.replace("fma", "fma avx512_bf16"))
    assert machine.cpu_bf16() == (False, True)
    info.write_text(AVX2_CPUINFO)
    assert machine.cpu_bf16() == (False, False)
    line = machine.describe_machine(torch.device("cpu"))
    assert line.startswith("CPU AMD EPYC 7B13 (no AMX, no native bf16), ")
    assert f"{os.cpu_count()} cores" in line and line.endswith(f"torch threads {torch.get_num_threads()}")
    monkeypatch.setattr(machine, "CPUINFO", tmp_path / "missing")
    assert machine.cpu_flags() == set() and machine.cpu_model()  # the platform module's answer


def test_this_machine_is_described_in_one_line():
    line = machine.describe_machine()
    assert "\n" not in line and f"torch threads {torch.get_num_threads()}" in line
    if torch.cuda.is_available():
        assert line.startswith(f"GPU {torch.cuda.get_device_name(0)} ") and f"CUDA {torch.version.cuda}" in line
        return
    assert line == machine.describe_machine("cpu")
    flags = set()
    if os.path.exists("/proc/cpuinfo"):
        flags = set(next((ln.split(":", 1)[1].split() for ln in open("/proc/cpuinfo") if ln.startswith("flags")), []))
    amx, bf16 = "amx_bf16" in flags, "amx_bf16" in flags or "avx512_bf16" in flags
    assert f"({'AMX' if amx else 'no AMX'}, {'native bf16' if bf16 else 'no native bf16'})" in line


def test_the_gpu_driver_is_read_from_the_kernel_module(tmp_path, monkeypatch):
    version = tmp_path / "version"
    version.write_text("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.54.15  Release Build  (dvs-builder@U16)\n"
                       "GCC version:  gcc version 12.3.0\n")
    monkeypatch.setattr(machine, "NVIDIA_DRIVER", version)
    assert machine.cuda_driver() == "550.54.15"
    version.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\n")
    assert machine.cuda_driver() == "535.104.05"


def test_torchrun_command_and_its_environment():
    cmd = torchrun_command(2, ["-m", "dfc_vae", "train", "--out", "RUN"], port=29511)
    assert cmd == [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
                   "--master_port=29511", "-m", "dfc_vae", "train", "--out", "RUN"]
    port = int(torchrun_command(1, [])[-1].removeprefix("--master_port="))
    assert 0 < port < 65536
    env = launch_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "h", "MASTER_PORT": "1",
                      "PATH": "/bin"})
    assert env == {"PATH": "/bin"} and not set(TORCHRUN_VARIABLES) & set(launch_env())


def test_the_shared_flags_keep_their_defaults_and_choices():
    from dfc_vae.commands._common import add_device_argument, add_run_argument, add_run_arguments

    p = argparse.ArgumentParser()
    add_run_arguments(p)
    add_device_argument(p)
    args = p.parse_args(["--run", "R"])
    assert (args.run, args.data, args.labels, args.device) == ("R", None, None, "auto")
    with pytest.raises(SystemExit):
        p.parse_args(["--run", "R", "--device", "tpu"])
    either = argparse.ArgumentParser()
    add_run_argument(either, model=True)
    assert (either.parse_args(["--model", "user/name"]).model, either.parse_args(["--run", "R"]).run) == ("user/name", "R")
    for wrong in ([], ["--run", "R", "--model", "M"]):  # one of them, not both
        with pytest.raises(SystemExit):
            either.parse_args(wrong)
    several = argparse.ArgumentParser()
    add_run_argument(several, several=True)
    assert several.parse_args(["--run", "A", "B"]).run == ["A", "B"]
    with pytest.raises(SystemExit):
        several.parse_args([])


def test_every_command_with_a_device_or_a_run_takes_them_alike():
    from dfc_vae.cli import build_parser
    from dfc_vae.commands._common import MODEL_HELP

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    with_device, with_model = set(), set()
    for name, parser in sub.choices.items():
        flags = {s: a for a in parser._actions for s in a.option_strings}
        if "--device" in flags:
            with_device.add(name)
            assert tuple(flags["--device"].choices) == choices.DEVICES, name
            assert flags["--device"].default == ("auto" if name != "train" else None), name  # train: runs/config.py's default
        if "--run" in flags:  # required: alone, or as one of --run RUN | --model DIR_OR_ID
            group = next((g for g in parser._mutually_exclusive_groups if flags["--run"] in g._group_actions), None)
            assert flags["--run"].required or (group and group.required and [a.dest for a in group._group_actions]
                                                == ["run", "model"]), name
            assert "made by `dfc-vae train`" in flags["--run"].help, name
        if "--model" in flags:
            with_model.add(name)
            assert flags["--model"].help == MODEL_HELP and flags["--model"].metavar == "DIR_OR_ID", name
    assert {"attributes", "edit", "evaluate", "fig5", "fig6", "gap", "reconstruct", "sample", "studio",
            "train"} <= with_device
    assert with_model == {"edit", "evaluate", "fit-prior", "fig5", "fig6", "manifold", "reconstruct", "sample",
                          "studio"}  # they only use a model


def test_a_figure_reads_as_a_papers():
    from dfc_vae.util.images import figure

    rows = [np.full((3, 32, 32, 3), v, np.uint8) for v in (40, 200)]
    image, where = figure(rows, ["first row", "a second row with a long name to wrap"], ["input", "0", "1"],
                          "synthetic faces; model run step 7")
    x0, y0, size, pitch = map(int, where["cells"].split(","))
    assert size == 64 and np.all(image[y0:y0 + size, x0:x0 + size] == 40)  # nearest-neighbour enlarged, not blurred
    assert np.all(image[y0 + pitch:y0 + pitch + size, x0 + 2 * pitch:x0 + 2 * pitch + size] == 200)
    ink = image.min(axis=2) < 128
    assert ink[y0:y0 + size, :x0].any() and ink[y0 + pitch:y0 + pitch + size, :x0].any()  # each row's label at its left
    assert ink[:y0, x0:].any()  # the columns' labels above them
    assert (image[y0 + 2 * pitch:].min(axis=2) < 200).any() and image.shape[0] < y0 + 2 * pitch + 30  # one line under it


def test_a_long_footer_wraps_to_the_faces_width():
    from dfc_vae.util.images import FOOTER_WIDTH, figure

    rows = [np.full((6, 32, 32, 3), 90, np.uint8)]
    short, _ = figure(rows, ["row"], footer="synthetic faces")
    long_footer = "synthetic faces, not CelebA; VGG19 with RANDOM weights, not ImageNet; " * 6
    wrapped, where = figure(rows, ["row"], footer=long_footer)
    assert wrapped.shape[1] == short.shape[1] >= FOOTER_WIDTH  # the faces set the width, not the caption
    assert wrapped.shape[0] > short.shape[0] + 30  # the caption takes several lines instead
    x0, y0, size, _ = map(int, where["cells"].split(","))
    assert np.all(wrapped[y0:y0 + size, x0:x0 + size] == 90)


def test_grid_enlarges_faces_under_64_px_unless_asked_to_keep_them_native():
    from dfc_vae.util.images import grid

    faces = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    big = grid(faces, 3)
    assert big.shape == (64 + 4, 3 * 66 + 2, 3)
    assert np.array_equal(big[2:66:2, 2:66:2], faces[0]) and np.array_equal(big[3:66:2, 3:66:2], faces[0])
    assert grid(faces, 3, min_size=0).shape == (32 + 4, 3 * 34 + 2, 3)
    assert grid(np.zeros((2, 64, 64, 3), np.uint8), 2).shape == (64 + 4, 2 * 66 + 2, 3)  # 64 px: as they are


def test_a_caption_is_wrapped_to_the_picture_s_width():
    from dfc_vae.util.images import add_caption

    image = np.zeros((40, 200, 3), np.uint8)
    captioned = add_caption(image, ["a caption line far longer than the two hundred pixels of the picture above it"])
    assert captioned.shape[1] == 200 and captioned.shape[0] > 40
    ink = (captioned[40:].min(axis=2) < 128).any(axis=1)  # the rows of the strip with text in them
    starts = np.flatnonzero(ink[1:] & ~ink[:-1])
    assert len(starts) >= 2  # two lines or more


@pytest.mark.parametrize("argv,message", [
    (["sample", "--run", "RUN", "--n", "0"], "argument --n: 0 is out of range; allowed: an integer >= 1"),
    (["sample", "--run", "RUN", "--temperature", "nan"], "argument --temperature: nan is out of range"),
    (["sample", "--run", "RUN", "--seed", "-1"], "argument --seed: -1 is out of range"),
    (["reconstruct", "--run", "RUN", "--data", "D", "--n", "-2"], "argument --n: -2 is out of range"),
    (["synth", "--out", "OUT", "--workers", "-3"], "argument --workers: -3 is out of range"),
    (["prepare", "--data", "D", "--workers", "-1"], "argument --workers: -1 is out of range"),
    (["evaluate", "--run", "RUN", "--seed", "4294967296"], "argument --seed: 4294967296 is out of range"),
])
def test_other_commands_refuse_numbers_out_of_range(argv, message, tmp_path, capsys):
    argv = [str(tmp_path / a) if a in ("RUN", "D", "OUT") else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0] and message in err[0]
    assert list(tmp_path.iterdir()) == []


def test_an_error_line_starts_on_a_line_of_its_own_under_a_progress_bar(monkeypatch, capsys):
    import sys

    from tqdm.auto import tqdm

    import dfc_vae.commands.sample as sample

    def run(args):
        bar = tqdm(total=10, desc="working", file=sys.stderr)  # a bar left open by the failing step
        bar.update(3)
        raise UserError("something went wrong")

    monkeypatch.setattr(sample, "run", run)
    assert main(["sample", "--run", "x"]) == 2
    err = capsys.readouterr().err
    assert err.endswith("dfc-vae sample: error: something went wrong\n")
    line = next(line for line in err.split("\n") if "error:" in line)
    assert line == "dfc-vae sample: error: something went wrong"  # not appended to the bar's line
