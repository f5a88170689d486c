from PIL import Image

from distill.data.images import capped_size, image_tokens, load_image, sha256_file, to_rgb


def test_cap_keeps_area_under_max_and_multiples_of_28():
    for w, h in [(2000, 3000), (1024, 1365), (300, 400), (30, 30)]:
        cw, ch = capped_size(w, h, 262_144)
        assert cw % 28 == 0 and ch % 28 == 0
        assert cw * ch <= 262_144


def test_tokens_per_image():
    assert image_tokens(448, 448) == 256


def test_modes_become_rgb(tmp_path):
    rgba = Image.new("RGBA", (60, 60), (255, 0, 0, 0))
    assert to_rgb(rgba).getpixel((5, 5)) == (255, 255, 255)  # transparent -> white, not black
    for mode in ("L", "P", "CMYK", "RGBA"):
        p = tmp_path / f"x_{mode}.png" if mode != "CMYK" else tmp_path / "x.jpg"
        Image.new(mode, (2000, 1500)).save(p)
        img = load_image(p, max_pixels=262_144)
        assert img.mode == "RGB"
        assert img.width * img.height <= 262_144


def test_sha_identifies_bytes(tmp_path):
    import hashlib

    a, b, c = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"
    Image.new("RGB", (10, 10), (1, 2, 3)).save(a)
    b.write_bytes(a.read_bytes())
    Image.new("RGB", (10, 10), (1, 2, 4)).save(c)
    assert sha256_file(a) == sha256_file(b) == hashlib.sha256(a.read_bytes()).hexdigest()
    assert sha256_file(c) != sha256_file(a)


def test_no_shape_rounds_a_side_to_zero_and_the_long_side_is_cut_as_llamafactory_cuts_it(tmp_path):
    from distill.data.images import shrunk_size, unusable

    for w, h in [(1, 100_000), (1, 300_000), (300_000, 1), (2, 5), (1, 1), (5000, 30)]:
        sw, sh = shrunk_size(w, h, 262_144)
        assert min(sw, sh) >= 28 and max(sw, sh) <= 180 * min(sw, sh), (w, h, sw, sh)
        assert image_tokens(w, h) > 0
    assert shrunk_size(1, 100_000) == (28, 28 * 180)  # LLaMA-Factory's Qwen2-VL plugin: 28 wide, then 180:1
    assert shrunk_size(2000, 3000) == (418, 627)  # an ordinary cover: as before
    assert unusable(1, 100_000) and unusable(100_000, 1) and not unusable(1000, 1400)
    path = tmp_path / "strip.png"
    Image.new("RGB", (1, 100_000), (9, 9, 9)).save(path)
    assert load_image(path).size == (28, 5040)


def test_an_image_is_read_once_however_many_records_name_it(tmp_path, monkeypatch):
    from pathlib import Path

    from distill.data import images

    path = tmp_path / "cover.png"
    Image.new("RGB", (64, 80), (1, 2, 3)).save(path)
    reads = []
    real = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: reads.append(self) or real(self))
    first = [images.inspect_image(path) for _ in range(5)]
    assert len(reads) == 1 and first[0].problem is None and (first[0].width, first[0].height) == (64, 80)
    Image.new("RGB", (64, 81), (1, 2, 3)).save(path)  # a changed file is read again
    assert images.inspect_image(path).height == 81 and len(reads) == 2
