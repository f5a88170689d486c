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
