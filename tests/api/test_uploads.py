"""Photo uploads: formats (HEIC included), EXIF orientation, size and pixel limits, bad data."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from api.uploads import UploadError, decode_image_upload
from search.errors import SearchServiceError


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def red_left_half(width: int = 40, height: int = 20) -> Image.Image:
    """Left half red, right half white: orientation shows where the red ends up."""
    image = Image.new("RGB", (width, height), (255, 255, 255))
    image.paste((220, 20, 20), (0, 0, width // 2, height))
    return image


def heic_bytes(image: Image.Image) -> bytes:
    pillow_heif = pytest.importorskip("pillow_heif")
    buffer = io.BytesIO()
    pillow_heif.from_pillow(image).save(buffer, quality=90)
    return buffer.getvalue()


class TestFormats:
    @pytest.mark.parametrize(
        ("fmt", "params"), [("JPEG", {"quality": 95}), ("PNG", {}), ("WEBP", {"quality": 95})]
    )
    def test_accepted_formats_decode(self, fmt: str, params: dict[str, object]) -> None:
        image = decode_image_upload(encode(red_left_half(), fmt, **params))
        assert image.size == (40, 20)
        r, g, b = image.convert("RGB").getpixel((5, 10))  # type: ignore[misc]
        assert r > 180 and g < 80 and b < 80

    def test_heic_from_an_iphone_decodes(self) -> None:
        image = decode_image_upload(heic_bytes(red_left_half(64, 32)))
        assert image.size == (64, 32)
        r, g, b = image.convert("RGB").getpixel((8, 16))  # type: ignore[misc]
        assert r > 150 and g < 100 and b < 100

    def test_png_with_transparency_decodes(self) -> None:
        image = Image.new("RGBA", (10, 10), (0, 0, 255, 0))
        assert decode_image_upload(encode(image, "PNG")).mode == "RGBA"

    def test_large_photo_is_shrunk(self) -> None:
        image = decode_image_upload(encode(Image.new("RGB", (3000, 1500), "navy"), "JPEG"))
        assert max(image.size) == 1024
        assert image.size[0] == 2 * image.size[1]

    @pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
    def test_other_image_formats_are_415(self, fmt: str) -> None:
        with pytest.raises(UploadError) as info:
            decode_image_upload(encode(red_left_half(), fmt))
        assert info.value.status_code == 415
        assert "JPEG, PNG, WebP or HEIC" in info.value.message


class TestOrientation:
    def test_exif_orientation_is_applied(self) -> None:
        exif = Image.Exif()
        exif[0x0112] = 6  # stored sideways: display rotated 90 degrees clockwise
        data = encode(red_left_half(40, 20), "JPEG", quality=95, exif=exif.tobytes())
        image = decode_image_upload(data)
        assert image.size == (20, 40)
        # The stored left half is on top once rotated clockwise.
        top = image.convert("RGB").getpixel((10, 5))
        bottom = image.convert("RGB").getpixel((10, 35))
        assert top[0] > 180 and top[1] < 80  # type: ignore[index]
        assert min(bottom) > 200  # type: ignore[arg-type]


class TestRejections:
    @pytest.mark.parametrize(
        "data",
        [b"%PDF-1.7 not a photo", b"<svg xmlns='http://www.w3.org/2000/svg'/>", b"\x00" * 64],
    )
    def test_not_an_image_is_415(self, data: bytes) -> None:
        with pytest.raises(UploadError) as info:
            decode_image_upload(data)
        assert info.value.status_code == 415
        assert "not an image" in info.value.message

    def test_empty_upload_is_422(self) -> None:
        with pytest.raises(UploadError) as info:
            decode_image_upload(b"")
        assert info.value.status_code == 422
        assert "empty" in info.value.message

    def test_truncated_jpeg_is_422(self) -> None:
        data = encode(Image.effect_noise((200, 200), 64).convert("RGB"), "JPEG", quality=90)
        with pytest.raises(UploadError) as info:
            decode_image_upload(data[: len(data) // 2])
        assert info.value.status_code == 422
        assert "truncated" in info.value.message

    def test_truncated_heic_is_rejected(self) -> None:
        data = heic_bytes(red_left_half(64, 64))
        with pytest.raises(UploadError) as info:
            decode_image_upload(data[: len(data) // 2])
        assert info.value.status_code in (415, 422)

    def test_oversized_upload_is_413(self) -> None:
        data = encode(Image.effect_noise((300, 300), 100).convert("RGB"), "PNG")
        with pytest.raises(UploadError) as info:
            decode_image_upload(data, max_bytes=len(data) - 1)
        assert info.value.status_code == 413
        assert f"{len(data):,} bytes" in info.value.message
        assert decode_image_upload(data, max_bytes=len(data)).size == (300, 300)

    def test_decompression_bomb_is_413_before_decoding(self) -> None:
        # 20,000 x 20,000 white pixels compress to a few hundred kilobytes of PNG.
        data = encode(Image.new("1", (20_000, 20_000), 1), "PNG")
        assert len(data) < 1_000_000
        with pytest.raises(UploadError) as info:
            decode_image_upload(data, max_pixels=50_000_000)
        assert info.value.status_code == 413
        assert "megapixel" in info.value.message

    def test_pixel_limit_is_configurable(self) -> None:
        data = encode(red_left_half(40, 20), "PNG")
        with pytest.raises(UploadError, match="megapixel") as info:
            decode_image_upload(data, max_pixels=799)
        assert info.value.status_code == 413
        assert decode_image_upload(data, max_pixels=800).size == (40, 20)

    def test_upload_error_is_a_domain_error(self) -> None:
        assert issubclass(UploadError, SearchServiceError)

    @pytest.mark.parametrize(("max_bytes", "max_pixels"), [(0, 10), (10, 0)])
    def test_limits_must_be_positive(self, max_bytes: int, max_pixels: int) -> None:
        with pytest.raises(ValueError, match="max_bytes and max_pixels"):
            decode_image_upload(b"x", max_bytes=max_bytes, max_pixels=max_pixels)
