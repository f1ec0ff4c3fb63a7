"""Photographs: reading and writing every mode (engine.images), tiled inference (engine.tiles) and ``n2n-tui denoise``
on real files written to tmp_path: odd sizes, grey, RGBA, 16-bit, PSNR reported = PSNR of the written files, and
one-line errors with exit status 2 that never touch an input."""
from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image
from skimage import data as skdata
from skimage.metrics import peak_signal_noise_ratio

from engine.data import DataError, _read_image, load_images
from engine.images import ImageError, read_image, write_image
from engine.tiles import context, predict_self_ensemble, predict_tiled
from Miniproject_1.model import Model
from tui.cli import main

torch.set_num_threads(1)


def photo(h: int, w: int) -> np.ndarray:
    """A real photograph (astronaut), tiled to any size: (h, w, 3) uint8."""
    a = skdata.astronaut()
    reps = (-(-h // a.shape[0]), -(-w // a.shape[1]), 1)
    return np.tile(a, reps)[:h, :w]


def denoise(args, capsys):
    capsys.readouterr()
    try:
        status = main(["denoise", *map(str, args)])
    except SystemExit as e:  # argparse's own errors (also one line, exit 2)
        status = e.code
    out = capsys.readouterr()
    return status, out.out, out.err


# ------------------------------------------------------------------------------------------------------ images

@pytest.mark.parametrize("mode, channels, alpha", [("L", 1, False), ("LA", 1, True), ("RGB", 3, False),
                                                   ("RGBA", 3, True), ("P", 3, False), ("1", 1, False)])
def test_read_modes(tmp_path, mode, channels, alpha):
    im = Image.fromarray(photo(20, 30)).convert(mode)
    im.save(tmp_path / "x.png")
    pic = read_image(tmp_path / "x.png")
    assert pic.pixels.shape == (channels, 20, 30) and (pic.alpha is not None) == alpha and pic.bits == 8
    assert pic.rgb().shape == (3, 20, 30) and 0 <= pic.pixels.min() and pic.pixels.max() <= 1


@pytest.mark.parametrize("name, arr", [
    ("g16.png", (np.arange(30 * 20).reshape(20, 30) * 97 % 65536).astype(np.uint16)),
    ("g16.tif", (np.arange(30 * 20).reshape(20, 30) * 97 % 65536).astype(np.uint16)),
    ("rgb16.tif", (np.arange(20 * 30 * 3).reshape(20, 30, 3) * 331 % 65536).astype(np.uint16)),
    ("rgba16.tif", (np.arange(20 * 30 * 4).reshape(20, 30, 4) * 331 % 65536).astype(np.uint16)),
    ("rgba.png", photo(20, 30)[..., [0, 1, 2, 0]]),
    ("la.png", photo(20, 30)[..., :2]),
])
def test_write_keeps_mode_and_depth_exactly(tmp_path, name, arr):
    if name.endswith(".tif"):
        tifffile.imwrite(tmp_path / name, arr, photometric="rgb" if arr.ndim == 3 and arr.shape[-1] >= 3
                         else "minisblack", extrasamples=["unassalpha"] if arr.ndim == 3 and arr.shape[-1] == 4
                         else None)
    else:
        Image.fromarray(arr).save(tmp_path / name)
    pic = read_image(tmp_path / name, exact=True)
    assert pic.bits == (16 if arr.dtype == np.uint16 else 8)
    write_image(tmp_path / ("copy-" + name), pic)
    again = read_image(tmp_path / ("copy-" + name), exact=True)
    assert torch.equal(again.pixels, pic.pixels) and again.bits == pic.bits
    assert (again.alpha is None) == (pic.alpha is None)
    if pic.alpha is not None:
        assert torch.equal(again.alpha, pic.alpha)


def test_a_cmyk_jpeg_is_read_as_rgb(tmp_path):
    rgb = photo(64, 64)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    Image.fromarray(rgb).save(tmp_path / "other.png")
    got = _read_image(tmp_path / "cmyk.jpg")
    want = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255
    assert got.shape == (3, 64, 64)
    assert (got - want).abs().mean().item() < 0.03  # was 0.507: K dropped as if it were alpha
    assert load_images(tmp_path, noise="gaussian:10", n_train=4, n_val=2).val_target.shape == (2, 3, 32, 32)


def test_a_grey_alpha_png_is_read_with_alpha_dropped(tmp_path):
    la = photo(64, 64)[..., :2]
    Image.fromarray(la).save(tmp_path / "la.png")  # mode LA: was rejected as shape (64, 64, 2)
    got = _read_image(tmp_path / "la.png")
    assert got.shape == (3, 64, 64) and torch.equal(got[0], got[2])
    assert torch.equal(got[0], torch.from_numpy(la[..., 0]).float() / 255)


@pytest.mark.parametrize("content, why", [(b"\x89PNG\r\n\x1a\nnot really", "corrupt or truncated"),
                                          (b"hello", "not an image"), ("truncated", "corrupt or truncated")])
def test_a_corrupt_image_is_one_line_exit_2(tmp_path, capsys, content, why):
    bad = tmp_path / "bad.png"
    if content == "truncated":
        Image.fromarray(photo(64, 64)).save(tmp_path / "good.png")
        content = (tmp_path / "good.png").read_bytes()[:3000]
    bad.write_bytes(content)
    with pytest.raises(DataError, match=why):
        _read_image(bad)
    Image.fromarray(photo(64, 64)).save(tmp_path / "fine.png")
    for argv in (["data", "make", "--out", str(tmp_path / "o"), "--source", f"images:{tmp_path}"],
                 ["denoise", str(bad), "-o", str(tmp_path / "out.png")]):
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert str(bad) in err and why in err and len(err.strip().splitlines()) == 1
    assert bad.read_bytes() == content


def test_16_bit_colour_png_is_refused_where_depth_matters(tmp_path):
    import struct
    import zlib

    a = (np.arange(8 * 6 * 3).reshape(6, 8, 3) * 999 % 65536).astype(">u2")
    raw = b"".join(b"\x00" + row.tobytes() for row in a)

    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 6, 16, 2, 0, 0, 0))
    (tmp_path / "rgb16.png").write_bytes(b"\x89PNG\r\n\x1a\n" + header
                                         + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    assert read_image(tmp_path / "rgb16.png").bits == 8  # training crops: the high byte is plenty
    with pytest.raises(ImageError, match="16-bit colour PNG.*TIFF"):
        read_image(tmp_path / "rgb16.png", exact=True)


# ------------------------------------------------------------------------------------------------------- tiles

def test_tiled_equals_untiled():
    m = Model()
    m.load_pretrained_model()  # the shipped weights: a real receptive field, not the identity
    image = torch.from_numpy(photo(150, 203)).permute(2, 0, 1).float()
    whole = m.predict(image[None])[0]
    tiled = predict_tiled(m, image, tile=64, margin=32)  # 3 x 4 tiles with seams at 64 and 128
    assert (tiled - whole).abs().max().item() / 255 < 1e-4
    assert not torch.equal(whole, image)


def _random_unet(widths) -> Model:
    """A Model whose U-Net has random weights everywhere (the head too: a new one starts as the identity)."""
    torch.manual_seed(0)
    m = Model(widths=widths, device="cpu")
    torch.nn.init.normal_(m.net.head.weight, std=0.1)
    return m


def test_a_deeper_unet_sees_further_and_tiles_with_the_margin_it_needs():
    m = _random_unet((8, 8, 8, 8))  # four levels: a receptive radius of 58 px, more than the default margin of 32
    assert context(m) == (64, 16) and context(Model(device="cpu")) == (32, 16)
    image = torch.from_numpy(photo(150, 203)).permute(2, 0, 1).float()
    with torch.no_grad():  # the radius is an upper bound: a change at one pixel moves nothing beyond it
        poked = image.clone()
        poked[:, 75, 100] = 255 - poked[:, 75, 100]
        moved = (m.predict(poked[None])[0] != m.predict(image[None])[0]).any(0)
        ys, xs = moved.nonzero().unbind(1)
        assert 26 < max((ys - 75).abs().max(), (xs - 100).abs().max()) <= m.net.receptive_radius
    whole = m.predict(image[None])[0]
    assert (predict_tiled(m, image, tile=64) - whole).abs().max().item() / 255 < 1e-4


def test_miniproject_2_with_a_wide_kernel_tiles_with_the_margin_it_needs():
    """Miniproject_2 sees 3k px (k its kernel): from k = 11 more than the default margin of 32, so its tiles take 48."""
    from Miniproject_2.model import Model as Model2

    torch.manual_seed(0)
    m = Model2(c1=8, c2=8, c3=8, k=13, device="cpu")
    assert context(m) == (48, 16) and context(Model2(device="cpu")) == (32, 16)
    image = torch.from_numpy(photo(150, 203)).permute(2, 0, 1).float()
    whole = m.predict(image[None])[0].float()
    for y, x in ((75, 100), (76, 101)):  # the radius bounds how far one changed pixel moves the output
        poked = image.clone()
        poked[:, y, x] = 255 - poked[:, y, x]
        ys, xs = (m.predict(poked[None])[0].float() != whole).any(0).nonzero().unbind(1)
        assert 32 < max((ys - y).abs().max(), (xs - x).abs().max()) <= m.net.receptive_radius == 39
    assert (predict_tiled(m, image, tile=64) - whole).abs().max().item() / 255 < 1e-4
    assert (predict_tiled(m, image, tile=64, margin=32) - whole).abs().max().item() / 255 > 1e-4  # 32 px: seams


def test_self_ensemble_turns_every_pass_back():
    m = Model(device="cpu")  # untrained: the identity, so each of the 8 passes must come back to the image itself
    image = torch.from_numpy(photo(45, 70)).permute(2, 0, 1).float()
    assert torch.allclose(predict_self_ensemble(m, image), image, atol=1e-3)
    m = _random_unet((8, 8))  # not symmetric: the 8 passes differ, the ensemble is their mean
    passes = [predict_tiled(m, image.flip(2)).flip(2), predict_tiled(m, image)]
    ens = predict_self_ensemble(m, image)
    assert not torch.allclose(passes[0], passes[1], atol=1e-2) and not torch.allclose(ens, passes[1], atol=1e-2)


# ----------------------------------------------------------------------------------------------------- denoise

@pytest.mark.parametrize("h, w", [(1, 1), (33, 65), (1000, 1500)])
def test_denoise_odd_sizes(tmp_path, capsys, weights, h, w):
    Image.fromarray(photo(h, w)).save(tmp_path / "in.png")
    status, out, err = denoise([tmp_path / "in.png", "-o", tmp_path / "out.png", "--weights", weights], capsys)
    assert status == 0, err
    assert Image.open(tmp_path / "out.png").size == (w, h) and Image.open(tmp_path / "out.png").mode == "RGB"


def test_denoise_grey_rgba_16_bit_into_a_folder(tmp_path, capsys, weights):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(photo(40, 50)[..., 0]).save(src / "grey.png")
    rgba = np.dstack([photo(40, 50), np.tile(np.arange(50, dtype=np.uint8) * 5, (40, 1))])
    Image.fromarray(rgba).save(src / "rgba.png")
    Image.fromarray(photo(40, 50)[..., 1].astype(np.uint16) * 257 + 3).save(src / "deep.png")
    Image.fromarray(photo(40, 50)).save(src / "photo.jpg", quality=90)
    files = sorted(src.iterdir())
    status, out, err = denoise([*files, "-o", tmp_path / "out", "--weights", weights,
                                "--add-noise", "gaussian:25"], capsys)
    assert status == 0, err
    modes = {p.name: Image.open(p).mode for p in (tmp_path / "out").iterdir()}
    assert modes == {"grey.png": "L", "grey-noisy.png": "L", "rgba.png": "RGBA", "rgba-noisy.png": "RGBA",
                     "deep.png": "I;16", "deep-noisy.png": "I;16", "photo.jpg": "RGB", "photo-noisy.jpg": "RGB"}
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "rgba.png"))[..., 3], rgba[..., 3])  # alpha kept
    deep = np.asarray(Image.open(tmp_path / "out" / "deep.png"))
    assert deep.dtype == np.uint16 and (deep % 257 != 0).any()  # real 16-bit values, not 8-bit ones scaled
    assert "noisy (gaussian:25)" in out and sorted(files) == sorted(src.iterdir())  # inputs untouched


def test_denoise_json_psnr_matches_the_written_files(tmp_path, capsys, weights):
    Image.fromarray(photo(64, 96)).save(tmp_path / "a.png")
    Image.fromarray(photo(48, 40)[..., 2]).save(tmp_path / "b.png")
    status, out, err = denoise([tmp_path / "a.png", tmp_path / "b.png", "-o", tmp_path / "o", "--weights", weights,
                                "--add-noise", "gaussian:25", "--seed", "3", "--json"], capsys)
    assert status == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [set(r) for r in rows] == [{"input", "output", "noisy", "psnr_noisy", "psnr", "seconds"}] * 2
    for r in rows:
        clean = np.asarray(Image.open(r["input"]))
        for key, path in (("psnr", r["output"]), ("psnr_noisy", r["noisy"])):
            got = np.asarray(Image.open(path))
            assert r[key] == pytest.approx(peak_signal_noise_ratio(clean, got, data_range=255), abs=1e-3)
        assert 19 < r["psnr_noisy"] < 22 and r["psnr"] != r["psnr_noisy"]
    first = (tmp_path / "o" / "a-noisy.png").read_bytes()
    denoise([tmp_path / "a.png", "-o", tmp_path / "again.png", "--weights", weights, "--add-noise",
             "gaussian:25", "--seed", "3"], capsys)
    assert (tmp_path / "again-noisy.png").read_bytes() == first  # seeded


def test_denoise_with_a_run_reference(tmp_path, capsys, weights):
    from engine.config import RunConfig
    from sessions import Store

    with Store(tmp_path / "runs") as s:
        run = s.new_run(RunConfig(engine=1))
        (s.run_dir(run) / "best.pth").write_bytes(weights.read_bytes())
        s.set_state(run, "finished")
    Image.fromarray(photo(20, 20)).save(tmp_path / "a.png")
    status, out, err = denoise([tmp_path / "a.png", "-o", tmp_path / "b.png", "--weights", run[:15], "--runs-dir",
                                tmp_path / "runs"], capsys)
    assert status == 0, err
    status, out, err = denoise([tmp_path / "a.png", "-o", tmp_path / "c.png", "--weights", "nosuchrun",
                                "--runs-dir", tmp_path / "runs"], capsys)
    assert status == 2 and "no run matches 'nosuchrun'" in err


@pytest.mark.parametrize("argv, why", [
    (["{d}/in.png", "-o", "{d}/in.png"], "is one of the input images"),
    (["{d}/in.png", "{d}/in2.png", "-o", "{d}/file"], "a file, but 2 images were given"),
    (["{d}/in.png", "-o", "{d}/in2.png"], "exists (use --force"),
    (["{d}/missing.png", "-o", "{d}/out.png"], "file not found"),
    (["{d}/in.png", "-o", "{d}/file/x.png"], "is not a folder"),
    (["{d}/in.png", "-o", "{d}/out.gif"], "unsupported output format"),
    (["{d}/in.png", "-o", "{d}/out.png", "--add-noise", "gaussian:x"], "gaussian:SIGMA (0-255)"),
    (["{d}/in.png", "-o", "{d}/out.png", "--weights", "{d}/missing.pth"], "no such file"),
    (["{d}/rgba.png", "-o", "{d}/out.jpg"], "JPEG cannot hold an alpha channel"),
    (["{d}/rgb16.tif", "-o", "{d}/out.png"], "out.png: a 16-bit colour image can only be written as TIFF"),
])
def test_denoise_bad_input_is_one_line_exit_2(tmp_path, capsys, weights, argv, why):
    Image.fromarray(photo(16, 16)).save(tmp_path / "in.png")
    Image.fromarray(photo(16, 16)).save(tmp_path / "in2.png")
    Image.fromarray(photo(16, 16)[..., [0, 1, 2, 0]]).save(tmp_path / "rgba.png")
    tifffile.imwrite(tmp_path / "rgb16.tif", photo(16, 16).astype(np.uint16) * 257, photometric="rgb")
    (tmp_path / "file").write_text("keep me")
    argv = [a.format(d=tmp_path) for a in argv]
    if "--weights" not in argv:
        argv += ["--weights", str(weights)]
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    status, out, err = denoise(argv, capsys)
    assert status == 2 and why in err and len(err.strip().splitlines()) == 1, err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_images_of_a_file_says_it_is_a_file(tmp_path, capsys):
    f = tmp_path / "one.png"
    Image.new("RGB", (40, 40)).save(f)
    assert main(["eval", "--engine", "1", "--data", f"images:{f}", "--n-val", "4"]) == 2
    assert f"{f}: is a file, not a folder (images:DIR takes a folder of photographs)" in capsys.readouterr().err


def test_an_animated_image_says_only_its_first_frame_is_denoised(tmp_path, capsys, weights):
    src = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (36, 28), (40 * i, 90, 200 - 40 * i)) for i in range(3)]
    frames[0].save(src, save_all=True, append_images=frames[1:], duration=100)
    assert main(["denoise", str(src), "-o", str(tmp_path / "out.png"), "--weights", str(weights)]) == 0
    err = capsys.readouterr().err
    assert f"{src} has 3 frames (an animation); only the first is denoised" in err
    assert (tmp_path / "out.png").is_file()


def test_a_huge_image_is_refused_up_front_unless_asked(tmp_path, capsys, weights, recwarn):
    src = tmp_path / "huge.png"
    Image.new("L", (7000, 6000), 128).save(src)  # 42 megapixels, a few kB as a PNG
    out = tmp_path / "out.png"
    assert main(["denoise", str(src), "-o", str(out), "--weights", str(weights)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"n2n-tui: error: {src}: 7000x6000 is 42 megapixels, above the 40 that denoise takes without "
                   "--allow-large (minutes per image on a CPU)"), err
    assert not out.exists() and not [w for w in recwarn if "DecompressionBomb" in type(w.message).__name__]
