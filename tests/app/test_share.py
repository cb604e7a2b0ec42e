"""Sharing a model: `dfc-vae export` as a Hub-ready folder with its vectors and model card, and the
commands, `load_model` and `from_pretrained` that use such a folder (or a Hub id) instead of a run."""

from __future__ import annotations

import io
import json
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

from tiny import tiny_config, untrained_run

from dfc_vae import DFCVAE, edit_faces, load_model, read_photo
from dfc_vae.cli import main
from dfc_vae.data.sources import open_faces
from dfc_vae.editing.edit import SHOW_SIZE
from dfc_vae.editing.attributes import AttributeVectors, attribute_notes, compute_attribute_vectors, load_attribute_vectors
from dfc_vae.evaluation.classifier import load_classifier, train_classifier
from dfc_vae.runs.run import load_run
from dfc_vae.util.errors import UserError
from dfc_vae.util.fileio import write_json
from dfc_vae.util.images import save_png

EVALUATION = {"mean_accuracy": 0.8125, "mean_majority_baseline": 0.75, "psnr": 17.5, "ssim": 0.4321, "mse": 0.02,
              "vgg_distance": 1.0, "active_units": 5, "latent_dim": 8}


@pytest.fixture(scope="module")
def shared(tmp_path_factory, synth_root, cache_dir):
    """A run directory as `dfc-vae train` leaves it (config.json, checkpoints/latest.pt) holding an untrained
    VAE-123 with random VGG weights on the tiny synthetic faces (training adds nothing to what is tested
    here), with two vector files, a classifier, an evaluation summary and a Figure 5; and its export."""
    root = tmp_path_factory.mktemp("share")
    run_dir = root / "run"
    cfg = tiny_config(data=str(synth_root), out=str(run_dir), loss="vae123", latent_dim=8, base_channels=4, crop="official",
                      cache_dir=str(cache_dir))
    faces = open_faces(synth_root)
    untrained_run(run_dir, cfg, faces, step=7)
    run = load_run(run_dir)
    for method in ("mean-difference", "regression"):
        name = "train" if method == "mean-difference" else "regression"
        compute_attribute_vectors(run, faces, "train", cache_dir, False, method).save(run_dir / f"attributes_{name}.safetensors")
    train_classifier(faces, 32, cache_dir=cache_dir, epochs=1, batch_size=16, progress=False).save(run_dir / "classifier")
    write_json(run_dir / "eval" / "summary.json", EVALUATION)
    save_png(run_dir / "figures" / "fig5_interpolation.png", np.zeros((8, 8, 3), np.uint8))
    exported = root / "exported"
    assert main(["export", "--run", str(run_dir), "--out", str(exported)]) == 0
    photo = sorted((synth_root / "img_align_celeba").glob("*.jpg"))[0]
    return run_dir, exported, photo


def front_matter(card: str) -> dict:
    """The YAML block's keys (scalars and lists) as the Hub reads them; comments skipped."""
    lines = card.split("\n")
    assert lines[0] == "---"
    out, key = {}, None
    for line in lines[1:lines.index("---", 1)]:
        if line.startswith("#"):
            continue
        if line.startswith("- "):
            out[key].append(line[2:])
        else:
            key, _, value = line.partition(":")
            out[key] = value.strip() or []
    return out


def test_the_export_holds_every_file_and_a_card_that_says_how_it_was_made(shared):
    run_dir, exported, _ = shared
    files = sorted(str(p.relative_to(exported)) for p in exported.rglob("*") if p.is_file())
    assert files == ["README.md", "attributes_regression.safetensors", "attributes_train.safetensors",
                     "classifier/classifier.json", "classifier/model.safetensors", "config.json",
                     "figures/fig5_interpolation.png", "model.safetensors"]
    run = load_run(run_dir)
    config = json.loads((exported / "config.json").read_text())
    assert config["default_attributes"] == "attributes_train.safetensors" and config["step"] == 7
    assert config["description"] == run.description and config["evaluation"] == EVALUATION
    scored = load_classifier(run_dir).scored()
    for name in ("attributes_train.safetensors", "attributes_regression.safetensors"):
        mine, theirs = load_attribute_vectors(run_dir / name), load_attribute_vectors(exported / name)
        assert theirs.names == mine.names and theirs.meta == mine.meta and torch.equal(theirs.vectors, mine.vectors)
        for i, a in enumerate(mine.names):
            assert config["attributes"][name][a] == {"with": int(mine.n_pos[i]), "without": int(mine.n_neg[i]),
                                                     "constant": a in mine.constant, "scored": a in scored}
    card = (exported / "README.md").read_text()
    meta = front_matter(card)
    assert meta["library_name"] == "dfc_vae" and "dfc-vae" in meta["tags"] and "synthetic-data" in meta["tags"]
    assert meta["license"] == [] and "datasets" not in meta  # the license is the user's; no named dataset
    assert f"**Provenance**: {run.description}" in card
    assert "synthetic faces rendered by dfc_vae.data.synth (seed 3), not CelebA" in run.description
    assert "VGG19 with RANDOM weights, not ImageNet" in run.description and "7 steps" in run.description
    assert "VAE-123" in card and "arXiv:1610.00291" in card and "81.2%" in card and "17.50 dB" in card
    assert "![Figure 5 (interpolation)](figures/fig5_interpolation.png)" in card
    assert f'run, vectors = load_model("{exported}")' in card and f"dfc-vae studio --model {exported}" in card


def test_an_export_that_fails_midway_leaves_the_folder_as_it_was(shared, tmp_path, monkeypatch):
    """A full disk while the card is written: the earlier export in the folder is untouched, nothing new is
    half there, and no hidden staging folder stays behind."""
    from dfc_vae.sharing import export

    run_dir, _, _ = shared
    out = tmp_path / "exported"
    assert main(["export", "--run", str(run_dir), "--out", str(out)]) == 0
    (out / "notes.txt").write_text("the user's own file")
    (out / "model.safetensors").write_bytes(b"an earlier export's weights")  # what the new export would replace
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    write_bytes = export.write_bytes

    def disk_full_at_the_card(path, data):
        if path.name == "README.md":
            raise OSError(28, "No space left on device")
        write_bytes(path, data)

    monkeypatch.setattr(export, "write_bytes", disk_full_at_the_card)
    with pytest.raises(OSError):
        export.export_run(run_dir, out)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before and [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def test_load_model_gives_the_run_s_model_and_vectors_ready_for_edit_faces(shared):
    run_dir, exported, photo = shared
    run, vectors = load_model(exported)
    original = load_run(run_dir)
    assert all(torch.equal(v, original.model.state_dict()[k]) for k, v in run.model.state_dict().items())
    assert run.name == "exported" and run.description == original.description and run.step == 7
    assert vectors.names == load_attribute_vectors(run_dir / "attributes_train.safetensors").names
    face = read_photo(photo, run.config.image_size, run.config.crop)[None]
    edited = edit_faces(run, vectors, face, {"Smiling": 1.0})
    assert all(np.array_equal(a, b) for a, b in zip(edited, edit_faces(original, vectors, face, {"Smiling": 1.0})))
    other = load_model(exported, attributes=run_dir / "attributes_regression.safetensors").vectors
    assert other.meta["method"] == "regression"


def test_from_pretrained_returns_the_model_on_map_location(shared, monkeypatch):
    _, exported, _ = shared
    model = DFCVAE.from_pretrained(exported, map_location="meta")
    assert {p.device.type for p in model.parameters()} == {"meta"} and {b.device.type for b in model.buffers()} == {"meta"}
    moved = []
    monkeypatch.setattr(torch.nn.Module, "to", lambda self, *a, **k: moved.append(a) or self)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    DFCVAE.from_pretrained(exported, map_location="cuda:0")
    assert moved == [(torch.device("cuda:0"),)]  # the whole model goes to the device asked for


def test_edit_with_model_uses_the_export_s_vectors(shared, tmp_path):
    run_dir, exported, photo = shared
    by_model, by_run = tmp_path / "model.png", tmp_path / "run.png"
    assert main(["edit", str(photo), "--model", str(exported), "--set", "Smiling=1", "--out", str(by_model)]) == 0
    assert main(["edit", str(photo), "--run", str(run_dir), "--attributes", str(run_dir / "attributes_train.safetensors"),
                 "--set", "Smiling=1", "--out", str(by_run)]) == 0
    a, b = (np.asarray(Image.open(p).convert("RGB")) for p in (by_model, by_run))
    cell = 32 * -(-SHOW_SIZE // 32)  # input | reconstruction | edit, enlarged, above a caption naming the model
    assert np.array_equal(a[:cell + 4, :3 * (cell + 2) + 2], b[:cell + 4, :3 * (cell + 2) + 2])
    assert "model exported step 7" in Image.open(by_model).text["caption"]


def test_an_attribute_whose_labels_are_one_value_is_named_and_refused(shared, tmp_path, capsys):
    run_dir, exported, photo = shared
    vectors = load_attribute_vectors(exported / "attributes_train.safetensors")
    assert "Eyeglasses" in vectors.constant  # no training face of the tiny set wears eyeglasses
    assert main(["attributes", "--run", str(run_dir), "--out", str(tmp_path / "v.safetensors"), "--no-progress"]) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if "all one value" in l]
    assert len(lines) == 1 and "Eyeglasses" in lines[0]
    out = tmp_path / "o.png"
    assert main(["edit", str(photo), "--model", str(exported), "--set", "Eyeglasses=1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'Eyeglasses' has no vector" in err[0] and not out.exists()
    assert main(["fig6", "--model", str(exported), "--edit", "+Eyeglasses", "--out", str(tmp_path / "f.png")]) == 2
    assert not (tmp_path / "f.png").exists()


def test_fig6_with_model_uses_its_classifier_and_leaves_out_attributes_without_vectors(shared, tmp_path, capsys):
    _, exported, _ = shared
    before = (exported / "classifier" / "model.safetensors").stat().st_mtime_ns
    out = tmp_path / "fig6.png"
    assert main(["fig6", "--model", str(exported), "--out", str(out), "--faces", "2", "--cache-dir",
                 json.loads((exported / "config.json").read_text())["training_config"]["cache_dir"]]) == 0
    assert (exported / "classifier" / "model.safetensors").stat().st_mtime_ns == before  # reused, not retrained
    summary = json.loads(out.with_suffix(".json").read_text())
    eyeglasses = [r for name, r in summary["rows"].items() if "Eyeglasses" in name]
    assert eyeglasses and all(r["faces"] == 0 for r in eyeglasses)  # no vector: nothing drawn or measured
    assert any(r["faces"] for name, r in summary["rows"].items() if "Smiling" in name)
    assert "model exported step 7" in Image.open(out).text["caption"]


def test_studio_with_model_says_where_it_came_from_and_orders_its_sliders(shared, monkeypatch):
    pytest.importorskip("starlette")
    pytest.importorskip("httpx2")
    from starlette.testclient import TestClient

    from dfc_vae.app import studio as studio_module

    _, exported, photo = shared
    started = {}
    monkeypatch.setattr(studio_module, "serve", lambda run, vectors, host, port, token: started.update(run=run, vectors=vectors))
    assert main(["studio", "--model", str(exported), "--device", "cpu"]) == 0
    run, vectors = started["run"], started["vectors"]
    studio = studio_module.Studio(run, vectors)
    token = "a-studio-token-for-this-test"
    with TestClient(studio_module.create_app(studio, token), base_url="http://127.0.0.1:7860") as client:
        assert 'id="model"' in client.get(f"/?token={token}").text  # the printed URL: sets the cookie
        info = client.get("/api/info").json()
        assert info["run"] == "exported" and info["model"] == run.description
        scored = load_classifier(exported).scored()
        notes = info["attribute_notes"]
        assert info["attributes"] == list(notes) == list(attribute_notes(vectors, scored))
        assert not set(vectors.constant) & set(info["attributes"])  # hidden: no vector to add
        assert [n for n in info["attributes"] if not notes[n]] == [n for n in vectors.usable if n in scored]
        assert info["attributes"][:len(scored)] == [n for n in vectors.usable if n in scored]  # scored first
        assert {notes[n] for n in info["attributes"][len(scored):]} <= {"few examples", "not measured"}
        face = client.post("/api/faces?aligned=1", content=photo.read_bytes()).json()
        strip = client.post("/api/download", json={"face": face["id"], "settings": {"Smiling": 1}})
        assert run.description in Image.open(io.BytesIO(strip.content)).text["caption"]
        refused = client.post("/api/render", json={"face": face["id"], "settings": {"Eyeglasses": 1}})
        assert refused.status_code == 400 and "no vector" in refused.json()["error"]


def test_attribute_notes_put_scored_first_and_mark_the_rest():
    v = AttributeVectors(["A", "B", "C", "D", "E"], torch.ones(5, 2), np.array([50, 3, 40, 0, 60]),
                         np.array([50, 90, 40, 9, 60]))
    assert v.constant == ["D"] and v.usable == ["A", "B", "C", "E"]
    assert attribute_notes(v, ["C", "E"]) == {"C": "", "E": "", "A": "not measured", "B": "few examples"}
    assert attribute_notes(v, None) == {"A": "not measured", "B": "few examples", "C": "not measured", "E": "not measured"}
    with pytest.raises(UserError, match="'D' has no vector"):
        v.vector("D")


def test_a_hub_id_without_the_extra_or_offline_is_one_line_and_exit_2(shared, tmp_path, capsys, monkeypatch):
    _, _, photo = shared
    args = ["edit", str(photo), "--model", "someone/dfc-vae-celeba", "--set", "Smiling=1", "--out", str(tmp_path / "o.png")]
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # not installed
    assert main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and 'pip install "dfc_vae[hub]"' in err and "Traceback" not in err

    def offline(repo_id):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(snapshot_download=offline))
    assert main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "cannot fetch someone/dfc-vae-celeba" in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())


def test_an_export_of_the_old_format_still_loads(shared, tmp_path, capsys):
    """An export as earlier versions wrote it: model.safetensors and config.json only."""
    run_dir, exported, photo = shared
    old = tmp_path / "old"
    old.mkdir()
    (old / "model.safetensors").write_bytes((exported / "model.safetensors").read_bytes())
    config = json.loads((exported / "config.json").read_text())
    write_json(old / "config.json", {k: config[k] for k in ("model", "step", "meta", "training_config")})
    out = tmp_path / "o.png"
    assert main(["edit", str(photo), "--model", str(old), "--set", "Smiling=1", "--out", str(out)]) == 2
    assert "pass --attributes FILE" in capsys.readouterr().err and not out.exists()
    assert main(["edit", str(photo), "--model", str(old), "--attributes", str(exported / "attributes_train.safetensors"),
                 "--set", "Smiling=1", "--out", str(out)]) == 0
    assert main(["sample", "--run", str(old)]) == 2
    assert "pass it as --model" in capsys.readouterr().err
