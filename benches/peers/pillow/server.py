"""Benchmark peer: a Pillow WSGI app that speaks the ImgFlux /process contract.

It supports the options the benchmark uses (w, h, format png|jpeg, q) and
resizes as thumbor's Pillow engine (thumbor/engines/pil.py) does: draft()
lets libjpeg scale a JPEG down by 1/2, 1/4 or 1/8 while decoding, to no less
than the target size, then a Lanczos resize makes the exact size, and JPEG
output uses optimised Huffman tables. Run it under gunicorn with
gunicorn.conf.py beside this file.
"""

import io
import json
import logging
import os
from urllib.parse import parse_qsl

import multipart
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

API_KEYS = frozenset(
    key.strip()
    for key in os.environ.get("API_KEYS", "rust_is_fast_123,demo_user_007").split(",")
    if key.strip()
)
MAX_BODY_BYTES = 10 * 1024 * 1024
MAX_SIDE = 8192
MAX_INPUT_PIXELS = 50_000_000
ALLOWED_PARAMS = frozenset({"w", "h", "format", "q"})
CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg"}
# EXIF orientations 5 to 8 swap width and height.
TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})

# Pillow's own bomb check warns at MAX_IMAGE_PIXELS and raises only at twice
# that, so decode_image() enforces MAX_INPUT_PIXELS itself instead.
Image.MAX_IMAGE_PIXELS = None

log = logging.getLogger("pillow-peer")


class HttpError(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def parse_side(name, text):
    if text is None:
        return None
    if not text.isdigit() or not 1 <= int(text) <= MAX_SIDE:
        raise HttpError(
            400, "invalid_parameter", f"invalid {name}: '{text}' is not an integer from 1 to {MAX_SIDE}"
        )
    return int(text)


def parse_options(query_string):
    """Parse the query into (width, height, format, quality), rejecting
    unknown and repeated parameters as ImgFlux does."""
    params = {}
    for name, value in parse_qsl(query_string, keep_blank_values=True):
        if name not in ALLOWED_PARAMS:
            raise HttpError(
                400, "invalid_parameter", f"unknown parameter '{name}': this peer supports w, h, format and q"
            )
        if name in params:
            raise HttpError(400, "invalid_parameter", f"parameter '{name}' is repeated")
        params[name] = value

    width = parse_side("w", params.get("w"))
    height = parse_side("h", params.get("h"))

    image_format = params.get("format", "png").lower()
    if image_format == "jpg":
        image_format = "jpeg"
    if image_format not in CONTENT_TYPES:
        raise HttpError(400, "invalid_parameter", f"invalid format: '{image_format}' is not png or jpeg")

    quality_text = params.get("q", "80")
    if not quality_text.isdigit() or not 1 <= int(quality_text) <= 100:
        raise HttpError(400, "invalid_parameter", f"invalid q: '{quality_text}' is not an integer from 1 to 100")

    return width, height, image_format, int(quality_text)


def read_image_field(environ):
    """Return the bytes of the multipart field `image`, keeping it in memory."""
    content_length = int(environ.get("CONTENT_LENGTH") or 0)
    if content_length > MAX_BODY_BYTES:
        raise HttpError(413, "body_too_large", f"body exceeds {MAX_BODY_BYTES} bytes")

    content_type, options = multipart.parse_options_header(environ.get("CONTENT_TYPE", ""))
    if content_type != "multipart/form-data" or "boundary" not in options:
        raise HttpError(415, "unsupported_media_type", "expected multipart/form-data with a boundary")

    # Spool limits at the body limit keep every part in memory, because the
    # parser's 64 KiB default would write most images to a temporary file.
    parser = multipart.MultipartParser(
        environ["wsgi.input"],
        options["boundary"],
        content_length=content_length,
        partsize_limit=MAX_BODY_BYTES,
        spool_limit=MAX_BODY_BYTES,
        memory_limit=MAX_BODY_BYTES,
        disk_limit=0,
    )
    try:
        part = parser.get("image")
    except multipart.MultipartError as error:
        raise HttpError(400, "malformed_multipart", f"malformed multipart body: {error}") from error
    if part is None or part.size == 0:
        raise HttpError(400, "missing_image", "multipart field 'image' is missing or empty")
    return part.raw


def fit_inside(source_width, source_height, width, height):
    """Return the largest size with the source's aspect ratio that fits in
    width x height. A missing side follows from the other one."""
    if width is None and height is None:
        return source_width, source_height
    scale_x = width / source_width if width is not None else float("inf")
    scale_y = height / source_height if height is not None else float("inf")
    if scale_x <= scale_y:
        return width, max(1, round(source_height * scale_x))
    return max(1, round(source_width * scale_y)), height


def decode_image(data, width, height):
    """Decode and orient the image, shrinking JPEGs on load, and return it
    with the target size."""
    image = Image.open(io.BytesIO(data))
    if image.width * image.height > MAX_INPUT_PIXELS:
        raise HttpError(422, "image_too_large", f"image has more than {MAX_INPUT_PIXELS} pixels")

    orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    transposed = orientation in TRANSPOSING_ORIENTATIONS
    upright_width, upright_height = (image.height, image.width) if transposed else image.size
    target = fit_inside(upright_width, upright_height, width, height)

    if image.format == "JPEG":
        stored_target = (target[1], target[0]) if transposed else target
        image.draft(None, stored_target)
    image = ImageOps.exif_transpose(image)
    return image, target


def encode_image(image, image_format, quality):
    output = io.BytesIO()
    if image_format == "jpeg":
        if image.mode in ("RGBA", "LA"):
            background = Image.new("RGB", image.size, (255, 255, 255))
            background.paste(image, mask=image.getchannel("A"))
            image = background
        elif image.mode != "L":
            image = image.convert("RGB")
        image.save(output, "JPEG", quality=quality, optimize=True)
    else:
        image.save(output, "PNG")
    return output.getvalue()


def process(data, width, height, image_format, quality):
    try:
        image, target = decode_image(data, width, height)
        # Palette and 1-bit images resize only with NEAREST in Pillow.
        if image.mode not in ("RGB", "RGBA", "L", "LA"):
            has_alpha = image.has_transparency_data
            image = image.convert("RGBA" if has_alpha else "RGB")
        if image.size != target:
            image = image.resize(target, Image.Resampling.LANCZOS)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise HttpError(422, "undecodable_image", f"image could not be decoded: {error}") from error
    return encode_image(image, image_format, quality)


STATUS_TEXT = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    500: "Internal Server Error",
}


def json_reply(start_response, status, body, extra_headers=()):
    payload = json.dumps(body).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
    start_response(f"{status} {STATUS_TEXT.get(status, 'Error')}", headers + list(extra_headers))
    return [payload]


def handle_process(environ, start_response):
    if environ.get("HTTP_X_API_KEY") not in API_KEYS:
        raise HttpError(401, "unauthorized", "missing or invalid x-api-key header")
    width, height, image_format, quality = parse_options(environ.get("QUERY_STRING", ""))
    data = read_image_field(environ)
    output = process(data, width, height, image_format, quality)
    start_response(
        "200 OK",
        [("Content-Type", CONTENT_TYPES[image_format]), ("Content-Length", str(len(output)))],
    )
    return [output]


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    method = environ.get("REQUEST_METHOD", "")
    try:
        if path == "/health" and method == "GET":
            return json_reply(start_response, 200, {"status": "ok"})
        if path != "/process":
            raise HttpError(404, "not_found", f"no route for {path}")
        if method != "POST":
            return json_reply(
                start_response,
                405,
                {"error": {"status": 405, "code": "method_not_allowed", "message": f"method {method} is not allowed"}},
                [("Allow", "POST")],
            )
        return handle_process(environ, start_response)
    except HttpError as error:
        body = {"error": {"status": error.status, "code": error.code, "message": error.message}}
        return json_reply(start_response, error.status, body)
    except Exception:
        log.exception("request %s %s failed", method, path)
        body = {"error": {"status": 500, "code": "internal_error", "message": "internal error"}}
        return json_reply(start_response, 500, body)
