"""`dfc-vae edit`: a user's own face photo, and the mistakes a user can make."""

import numpy as np
import pytest
from PIL import Image

from dfc_vae.editing.attributes import compute_attribute_vectors
from dfc_vae.cli import main
from dfc_vae.editing.edit import SHOW_SIZE, read_photo
from dfc_vae.util.errors import UserError
from dfc_vae.runs.run import load_run


@pytest.fixture(scope="module")
def setup(tiny_trained_run, synth_root, cache_dir):
    out = tiny_trained_run
    run = load_run(out)
    vec = compute_attribute_vectors(run, synth_root, "train", cache_dir, progress=False).save(out / "attrs.safetensors")
    photo = next((synth_root / "img_align_celeba").glob("*.jpg"))
    return out, vec, photo


def edit(setup, image, *sets, out):
    run, vec, _ = setup
    args = ["edit", str(image), "--run", str(run), "--attributes", str(vec), "--out", str(out)]
    for s in sets:
        args += ["--set", s]
    return main(args)


def test_edit_a_synthetic_photo(setup, tmp_path):
    out = tmp_path / "edited.png"
    assert edit(setup, setup[2], "Smiling=1", "Male=0.8", out=out) == 0
    img = Image.open(out)
    factor = SHOW_SIZE // 32
    assert img.width >= 3 * 32 * factor and img.height > 32 * factor  # input | reconstruction | edit, caption
    assert "Smiling +1, Male +0.8" in img.text["settings"]


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_grayscale_rgba_and_palette_photos_are_converted(setup, tmp_path, mode):
    src = tmp_path / f"face_{mode}.png"
    Image.open(setup[2]).convert(mode).save(src)
    assert read_photo(src, 32).shape == (32, 32, 3)
    assert edit(setup, src, "Smiling=1", out=tmp_path / "o.png") == 0


def test_other_sizes_are_rescaled_but_other_shapes_refused(setup, tmp_path):
    big = tmp_path / "big.jpg"
    Image.open(setup[2]).resize((3560, 4360)).save(big, quality=90)  # 15.5 Mpx, CelebA's shape
    small = np.asarray(Image.open(setup[2]).resize((32, 32)))
    assert np.abs(read_photo(big, 32).astype(int) - read_photo(setup[2], 32)).mean() < 8
    square = tmp_path / "square.png"
    Image.fromarray(small).save(square)
    with pytest.raises(UserError, match="178x218"):
        read_photo(square, 32)


def test_runs_of_square_folder_faces_take_photos_of_any_shape(setup, tmp_path):
    """A run trained with the 'center' crop (a folder of square faces) reads a photo as its training
    faces were read: the largest centred square, resized; no CelebA shape is asked for."""
    from dfc_vae.data.decode import load_face

    wide = tmp_path / "wide.png"
    Image.open(setup[2]).convert("RGB").resize((300, 200)).save(wide)
    face = read_photo(wide, 32, "center")
    assert face.shape == (32, 32, 3)
    assert np.array_equal(face, load_face(wide, 32, "center"))
    with pytest.raises(UserError, match="178x218"):
        read_photo(wide, 32, "official")


def test_decompression_bomb_is_a_user_error(setup, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(UserError, match="too large"):
        read_photo(setup[2], 32)


@pytest.mark.parametrize("setting, message", [
    ("Smilling=1", "unknown attribute 'Smilling'.*valid names: 5_o_Clock_Shadow, .*Smiling"),
    ("Smiling=lots", "not a number"),
    ("Smiling", "NAME=VALUE"),
    ("Smiling=nan", "finite"),
])
def test_bad_settings_exit_2_with_one_line_and_no_output(setup, tmp_path, capsys, setting, message):
    out = tmp_path / "o.png"
    assert edit(setup, setup[2], setting, out=out) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    import re
    assert re.search(message, err)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_unreadable_or_missing_image(setup, tmp_path, capsys):
    junk = tmp_path / "junk.jpg"
    junk.write_text("not an image")
    assert edit(setup, junk, "Smiling=1", out=tmp_path / "o.png") == 2
    assert "not an image" in capsys.readouterr().err
    assert edit(setup, tmp_path / "missing.jpg", "Smiling=1", out=tmp_path / "o.png") == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()
