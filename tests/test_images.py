import hashlib

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data

from tests.helpers import save_rgb
from ggtqc.images import DecodeError, DecodeLimits, decode_image


@pytest.fixture()
def photo():
    return data.astronaut()[100:164, 200:296]  # 64x96, not square


@pytest.mark.parametrize("suffix,params", [(".png", {}), (".bmp", {}), (".tif", {}), (".webp", {"IMWRITE_WEBP_QUALITY": 101})])
def test_lossless_formats_decode_exactly(tmp_path, photo, suffix, params):
    path = save_rgb(tmp_path / f"x{suffix}", photo, **params)
    decoded = decode_image(path)
    assert decoded.dtype == np.uint8 and decoded.shape == (64, 96, 3)
    np.testing.assert_array_equal(decoded, photo)


def test_jpeg_decodes_close_to_source(tmp_path, photo):
    decoded = decode_image(save_rgb(tmp_path / "x.jpg", photo, IMWRITE_JPEG_QUALITY=95))
    assert decoded.shape == (64, 96, 3)
    assert np.abs(decoded.astype(int) - photo).mean() < 3


def test_grayscale_becomes_three_equal_channels(tmp_path, photo):
    gray = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    decoded = decode_image(tmp_path / "g.png")
    assert decoded.shape == (64, 96, 3)
    for c in range(3):
        np.testing.assert_array_equal(decoded[..., c], gray)


def test_16_bit_scales_to_8_bit_without_clipping(tmp_path):
    ramp = np.linspace(0, 65535, 48 * 64).astype(np.uint16).reshape(48, 64)
    cv2.imwrite(str(tmp_path / "g16.png"), ramp)
    cv2.imwrite(str(tmp_path / "rgb16.png"), np.stack([ramp, ramp[::-1], ramp], axis=2))
    gray = decode_image(tmp_path / "g16.png")
    rgb = decode_image(tmp_path / "rgb16.png")
    expected = (ramp >> 8).astype(np.uint8)
    np.testing.assert_array_equal(gray[..., 0], expected)
    np.testing.assert_array_equal(rgb[..., 0], expected)
    np.testing.assert_array_equal(rgb[..., 1], expected[::-1])
    assert gray.max() == 255 and gray.min() == 0 and len(np.unique(gray)) == 256  # scaled, not clipped


def test_alpha_is_dropped_keeping_stored_rgb(tmp_path, photo):
    rgba = np.dstack([photo, np.zeros(photo.shape[:2], np.uint8)])  # fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(decode_image(tmp_path / "a.png"), photo)


def test_palette_image_expands_to_rgb(tmp_path, photo):
    Image.fromarray(photo).convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "p.png")
    decoded = decode_image(tmp_path / "p.png")
    assert decoded.shape == (64, 96, 3)
    assert np.abs(decoded.astype(int) - photo).mean() < 12


def test_exif_orientation_is_applied(tmp_path, photo):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: a viewer rotates it 90 degrees clockwise
    Image.fromarray(photo).save(tmp_path / "o.jpg", quality=98, exif=exif)
    decoded = decode_image(tmp_path / "o.jpg")
    assert decoded.shape == (96, 64, 3)
    assert np.abs(decoded.astype(int) - np.rot90(photo, -1)).mean() < 3


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp"])
def test_truncated_file_is_an_error(tmp_path, photo, suffix):
    whole = save_rgb(tmp_path / f"x{suffix}", photo).read_bytes()
    (tmp_path / f"t{suffix}").write_bytes(whole[: len(whole) * 2 // 3])
    with pytest.raises(DecodeError, match="truncated|corrupt"):
        decode_image(tmp_path / f"t{suffix}")


def test_empty_missing_and_non_image_files(tmp_path):
    (tmp_path / "e.png").write_bytes(b"")
    (tmp_path / "t.jpg").write_text("not an image at all")
    with pytest.raises(DecodeError, match="empty file"):
        decode_image(tmp_path / "e.png")
    with pytest.raises(DecodeError, match="not an image"):
        decode_image(tmp_path / "t.jpg")
    with pytest.raises(DecodeError, match="not found"):
        decode_image(tmp_path / "missing.png")


def test_unsupported_format_is_refused(tmp_path, photo):
    Image.fromarray(photo).save(tmp_path / "x.png", format="GIF")  # a GIF behind a .png name
    with pytest.raises(DecodeError, match="unsupported format GIF"):
        decode_image(tmp_path / "x.png")


def test_caps_refuse_before_decoding(tmp_path, photo):
    path = save_rgb(tmp_path / "x.png", photo)
    with pytest.raises(DecodeError, match="too many pixels"):
        decode_image(path, DecodeLimits(max_pixels=64 * 96 - 1))
    with pytest.raises(DecodeError, match="file too large"):
        decode_image(path, DecodeLimits(max_bytes=path.stat().st_size - 1))
    decode_image(path, DecodeLimits(max_pixels=64 * 96, max_bytes=path.stat().st_size))


def test_header_claiming_a_huge_image_is_refused_by_the_pixel_cap(tmp_path):
    # A 1x1 PNG whose header is edited to claim 100000 x 100000 pixels (a decompression bomb).
    import struct
    import zlib

    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 4)) + chunk(b"IEND", b"")
    (tmp_path / "bomb.png").write_bytes(bomb)
    with pytest.raises(DecodeError, match="too many pixels"):
        decode_image(tmp_path / "bomb.png")


def test_decoding_never_modifies_the_file(tmp_path, photo):
    path = save_rgb(tmp_path / "x.png", photo)
    before = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
    decode_image(path)
    assert (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns) == before
