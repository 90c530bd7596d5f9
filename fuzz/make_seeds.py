#!/usr/bin/env python3
"""Write the fuzz seed corpora under fuzz/seeds/ and the dictionary.

The images are drawn here (a few pixels each, with Pillow), so every seed
is small and made from scratch. Run from anywhere; the output replaces
fuzz/seeds/ and fuzz/imgflux.dict.
"""

import io
import shutil
from pathlib import Path

from PIL import Image

FUZZ_DIR = Path(__file__).resolve().parent
SEEDS = FUZZ_DIR / "seeds"
BOUNDARY = "fuzzBoundary7MA4"
KEY = "fuzz-key"


def gradient(width, height, mode="RGB"):
    image = Image.new("RGBA", (width, height))
    for y in range(height):
        for x in range(width):
            image.putpixel((x, y), (x * 40 % 256, y * 50 % 256, (x + y) * 30 % 256, 128 + x * 10))
    return image.convert(mode)


def encode(image, fmt, **options):
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def images():
    rgb = gradient(6, 4)
    rgba = gradient(5, 3, "RGBA")
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display.
    frames = [gradient(4, 4), gradient(4, 4).transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    animated = io.BytesIO()
    frames[0].save(animated, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return {
        "png": encode(rgba, "PNG"),
        "jpeg": encode(rgb, "JPEG", quality=70),
        "jpeg-exif": encode(rgb, "JPEG", quality=70, exif=exif.tobytes()),
        "gif": animated.getvalue(),
        "webp": encode(rgba, "WEBP", lossless=True),
        "bmp": encode(rgb, "BMP"),
        "tiff": encode(rgb, "TIFF"),
    }


def part(name, data, filename=None, newline=b"\r\n"):
    disposition = f'Content-Disposition: form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    return b"".join([
        f"--{BOUNDARY}".encode(), newline,
        disposition.encode(), newline,
        b"Content-Type: application/octet-stream", newline, newline,
        data, newline,
    ])


def form(parts, newline=b"\r\n"):
    return b"".join(parts) + f"--{BOUNDARY}--".encode() + newline


def multipart_seeds(all_images):
    content_type = f"multipart/form-data; boundary={BOUNDARY}\n".encode()
    png = all_images["png"]
    lf = b"\n"
    return {
        "image": content_type + form([part("image", png, "a.png")]),
        "fields-around": content_type + form([part("w", b"10"), part("image", png, "a.png"), part("note", b"x")]),
        "lf-endings": content_type + form([part("image", png, "a.png", lf)], lf),
        "preamble-epilogue": content_type + b"preamble\r\n" + form([part("image", png)]) + b"epilogue",
        "quoted-boundary": f'multipart/form-data; boundary="{BOUNDARY}"\n'.encode() + form([part("image", png)]),
        "filename-star": content_type + form([
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"image\"; filename*=UTF-8''%E2%82%AC.png\r\n\r\n".encode() + png + b"\r\n"
        ]),
        "two-images": content_type + form([part("image", png), part("image", png)]),
        "empty-image": content_type + form([part("image", b"")]),
        "no-closing": content_type + part("image", png),
    }


QUERIES = {
    "empty": "",
    "width": "w=100",
    "box-cover": "w=100&h=50&fit=cover&gravity=northwest",
    "contain-bg": "w=10&h=10&fit=contain&bg=%23ff000080",
    "fill": "w=3&h=300&fit=fill&enlarge=false",
    "format": "format=webp&q=90",
    "auto": "format=auto&h=7&bg=abc",
    "escaped": "%77=1&h=%32",
    "repeated": "w=1&w=2",
    "unknown": "width=100",
}


def request(path, body=b"", content_type=None, key=KEY, extra=b""):
    head = f"POST {path} HTTP/1.1\r\nHost: fuzz\r\n".encode()
    if key is not None:
        head += f"x-api-key: {key}\r\n".encode()
    if content_type is not None:
        head += f"Content-Type: {content_type}\r\n".encode()
    head += f"Content-Length: {len(body)}\r\n".encode() + extra + b"\r\n"
    return head + body


def request_seeds(all_images):
    content_type = f"multipart/form-data; boundary={BOUNDARY}"
    seeds = {}
    queries = {
        "png": "w=3",
        "jpeg": "w=4&h=4&fit=cover&format=jpeg&q=50",
        "jpeg-exif": "h=2&format=auto",
        "gif": "w=2&format=gif",
        "webp": "w=8&h=2&fit=contain&format=webp&bg=00ff00",
        "bmp": "format=png&enlarge=false&w=100",
        "tiff": "w=2&h=9&fit=fill",
    }
    for name, data in all_images.items():
        body = form([part("image", data, f"seed.{name}")])
        extra = b"Accept: image/webp\r\n" if name == "jpeg-exif" else b""
        seeds[f"process-{name}"] = request(f"/process?{queries[name]}", body, content_type, extra=extra)
    png_body = form([part("image", all_images["png"])])
    seeds["wrong-key"] = request("/process", png_body, content_type, key="nope")
    seeds["not-multipart"] = request("/process", all_images["png"], "image/png")
    seeds["health"] = b"GET /health HTTP/1.1\r\nHost: fuzz\r\n\r\n"
    seeds["metrics"] = b"GET /metrics HTTP/1.1\r\nHost: fuzz\r\n\r\n"
    seeds["preflight"] = b"OPTIONS /process HTTP/1.1\r\nHost: fuzz\r\nOrigin: https://a.example\r\n\r\n"
    return seeds


DICTIONARY = [
    "x-api-key: fuzz-key\r\n",
    f"multipart/form-data; boundary={BOUNDARY}",
    f"--{BOUNDARY}",
    f"\r\n--{BOUNDARY}--",
    "Content-Disposition: form-data; name=\"image\"",
    "; filename=\"",
    "filename*=UTF-8''",
    "Content-Type: ",
    "Content-Length: ",
    "Content-Transfer-Encoding: ",
    "Accept: image/webp\r\n",
    "POST /process?",
    "w=", "h=", "fit=cover", "fit=contain", "fit=fill", "gravity=", "enlarge=false",
    "format=jpeg", "format=webp", "format=gif", "format=auto", "q=", "bg=", "&",
]


def dictionary_entry(token):
    escaped = "".join(
        c if 0x20 <= ord(c) < 0x7F and c not in '"\\' else f"\\x{ord(c):02X}" for c in token
    )
    return f'"{escaped}"'


def write(folder, seeds):
    folder.mkdir(parents=True)
    for name, data in seeds.items():
        (folder / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def main():
    shutil.rmtree(SEEDS, ignore_errors=True)
    all_images = images()
    write(SEEDS / "multipart", multipart_seeds(all_images))
    write(SEEDS / "query", QUERIES)
    write(SEEDS / "request", request_seeds(all_images))
    (FUZZ_DIR / "imgflux.dict").write_text(
        "".join(dictionary_entry(token) + "\n" for token in DICTIONARY)
    )


if __name__ == "__main__":
    main()
