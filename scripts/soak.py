#!/usr/bin/env python3
"""Bounded load run against one imgflux process on 127.0.0.1.

Starts the binary, sends a weighted mix of valid uploads, bad images,
malformed bodies, oversized bodies and probes from N threads for a fixed
time, and checks every reply against what its kind of request must get.
Resident memory is sampled from /proc. The run fails on an unexpected 5xx,
a wrong status, or a request that fails in transport. It also fails when
the idle RSS after the run is more than 10 % and more than 4 MiB above
the idle RSS after warm-up.

Run through scripts/soak.sh, which builds the binary and finds the images.
Only the Python 3 standard library is used.
"""

import argparse
import collections
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

KEY = "soak-key"
BOUNDARY = "soakBoundary9Qz"
MAX_BODY_BYTES = 10 * 1024 * 1024
# Idle RSS after the run may exceed idle RSS after warm-up by this fraction.
MAX_RSS_GROWTH = 0.10
# ...and by this much in absolute terms, since an idle service that has
# freed its buffers is only a few MiB, where 10 % is allocator noise.
MAX_RSS_GROWTH_KIB = 4 * 1024
# Time with no load before an idle RSS sample, so in-flight work has ended.
SETTLE_SECONDS = 3
REQUEST_TIMEOUT = 120


def multipart(fields, newline=b"\r\n"):
    """Builds a multipart/form-data body from (name, filename, data) fields."""
    body = bytearray()
    for name, filename, data in fields:
        disposition = f'Content-Disposition: form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        body += f"--{BOUNDARY}".encode() + newline
        body += disposition.encode() + newline + newline
        body += data + newline
    body += f"--{BOUNDARY}--".encode() + newline
    return bytes(body)


def post(path, body, content_type=f"multipart/form-data; boundary={BOUNDARY}", key=KEY):
    head = f"POST {path} HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n"
    if key is not None:
        head += f"x-api-key: {key}\r\n"
    head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


class Request:
    """One prepared request and the statuses its reply may have."""

    def __init__(self, kind, name, data, allowed, chunked_body=None, from_http_layer=False):
        self.kind = kind
        self.name = name
        self.data = data
        self.allowed = allowed
        # Replies of the HTTP layer itself (a bad request line) carry no X-Request-Id.
        self.from_http_layer = from_http_layer
        # For chunked uploads, `data` is the head and this is the body to chunk.
        self.chunked_body = chunked_body


def valid_requests(shared):
    bench = shared / "bench-images"
    corpus = shared / "corpus"
    photos = [
        (bench / "photo-2mp-1600x1200.jpg", "w=800"),
        (bench / "photo-2mp-1600x1200.jpg", "w=640&format=jpeg&q=80"),
        (corpus / "photos/harvesters_1165x859.jpg", "w=300&h=300&fit=cover"),
        (corpus / "photos/portrait_1200x1800.jpg", "h=400&format=webp"),
        (bench / "photo-12mp-4032x3024.jpg", "w=1024&format=jpeg"),
    ]
    small = [
        (bench / "icon-256x256.png", "w=64"),
        (corpus / "png/basn6a16_rgba16.png", "w=16&fit=contain&h=16&bg=ff0000"),
        (corpus / "png/s01n3p01_1x1.png", "w=10"),
        (corpus / "gif/animated_muybridge_15f.gif", "w=100&format=gif"),
        (corpus / "webp/lossless_hat.webp", "w=50&format=png"),
        (corpus / "jpeg/progressive_peacock.jpg", "w=50&format=auto"),
        (corpus / "exif/landscape_orientation_6.jpg", "w=40"),
        (corpus / "bmp/rgb24.bmp", "w=30"),
        (corpus / "tiff/lzw_predictor_rgba.tiff", "w=20"),
    ]
    requests = []
    for kind, files in (("photo", photos), ("small", small)):
        for path, query in files:
            body = multipart([("image", path.name, path.read_bytes())])
            requests.append(Request(kind, f"{path.name}?{query}", post(f"/process?{query}", body), {200}))
    return requests


def bad_image_requests(shared):
    corpus = shared / "corpus"
    requests = []
    for folder in ("malformed", "png-corrupt", "unsupported", "bombs"):
        for path in sorted((corpus / folder).iterdir()):
            body = multipart([("image", path.name, path.read_bytes())])
            # Some "malformed" files still decode (a PNG named .jpg, a
            # truncated JPEG with its first scans), so 200 is allowed.
            allowed = {200, 400, 413, 415, 422}
            requests.append(Request("bad-image", f"{folder}/{path.name}", post("/process?w=100", body), allowed))
    return requests


def malformed_requests(shared):
    image = (shared / "corpus/png/basn2c08_rgb8.png").read_bytes()
    valid = multipart([("image", "a.png", image)])
    cases = [
        ("no boundary", post("/process", valid, "multipart/form-data"), {400}),
        ("no closing boundary", post("/process", valid[: valid.rindex(b"--" + BOUNDARY.encode())]), {400}),
        ("truncated body", post("/process", valid[: len(valid) // 2]), {400}),
        ("empty body", post("/process", b""), {400}),
        ("garbage body", post("/process", bytes(range(256)) * 40), {400}),
        ("two images", post("/process", multipart([("image", "a", image), ("image", "b", image)])), {400}),
        ("empty image", post("/process", multipart([("image", "a", b"")])), {400}),
        ("no image field", post("/process", multipart([("photo", "a", image)])), {400}),
        ("huge part headers", post("/process", valid.replace(b"\r\n\r\n", b"\r\nX-Pad: " + b"p" * 9000 + b"\r\n\r\n", 1)), {400}),
        ("not multipart", post("/process", image, "image/png"), {415}),
        ("unknown parameter", post("/process?width=10", valid), {400}),
        ("bad width", post("/process?w=0", valid), {400}),
        ("wrong key", post("/process", valid, key="wrong-key"), {401}),
        ("no key", post("/process", valid, key=None), {401}),
        ("wrong method", b"GET /process HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n", {405}),
        ("unknown path", b"GET /nowhere HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n", {404}),
    ]
    requests = [Request("malformed", name, data, allowed) for name, data, allowed in cases]
    requests.append(Request("malformed", "bad request line", b"NOT HTTP\r\n\r\n", {400}, from_http_layer=True))
    return requests


def oversized_requests():
    head = (
        f"POST /process HTTP/1.1\r\nHost: soak\r\nConnection: close\r\nx-api-key: {KEY}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
    )
    declared = [
        Request("oversized", f"declared {length} bytes", (head + f"Content-Length: {length}\r\n\r\n").encode() + b"x" * 1024, {413})
        for length in (MAX_BODY_BYTES + 1, 50 * 1024 * 1024, 10**15)
    ]
    chunked_head = (head + "Transfer-Encoding: chunked\r\n\r\n").encode()
    chunked = Request(
        "oversized-chunked", "chunked 10 MiB + 64 KiB", chunked_head, {413},
        chunked_body=b"x" * (MAX_BODY_BYTES + 64 * 1024),
    )
    return declared, [chunked]


def probe_requests():
    return [
        Request("probe", path, f"GET {path} HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n".encode(), {200})
        for path in ("/health", "/ready", "/metrics")
    ]


def build_mix(shared):
    """Returns (weight, requests) pairs: each pick chooses a group by weight."""
    valid = valid_requests(shared)
    declared, chunked = oversized_requests()
    return [
        (20, [r for r in valid if r.kind == "photo"]),
        (30, [r for r in valid if r.kind == "small"]),
        (15, bad_image_requests(shared)),
        (20, malformed_requests(shared)),
        (7, declared),
        (1, chunked),
        (7, probe_requests()),
    ]


def read_reply(sock):
    """Reads one HTTP reply and returns (status, headers, body)."""
    data = bytearray()
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} bytes of the reply head")
        data += chunk
    head, _, rest = bytes(data).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = bytearray(rest)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {len(body)} of {length} body bytes")
        body += chunk
    return status, headers, bytes(body[:length])


def send(port, request):
    """Sends one request; returns (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=REQUEST_TIMEOUT) as sock:
        sock.sendall(request.data)
        if request.chunked_body is not None:
            try:
                for start in range(0, len(request.chunked_body), 64 * 1024):
                    chunk = request.chunked_body[start : start + 64 * 1024]
                    sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                sock.sendall(b"0\r\n\r\n")
            except OSError:
                pass  # The server may reply 413 and close before the end.
        return read_reply(sock)


class Tally:
    """Counts shared by the client threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.statuses = collections.Counter()
        self.by_kind = collections.defaultdict(collections.Counter)
        self.failures = []
        self.failure_count = 0
        self.tolerated = collections.Counter()
        # 503 replies with code "overloaded" and Retry-After: expected under load.
        self.overloaded = 0

    def record(self, request, status, failure=None, tolerated=None):
        with self.lock:
            key = str(status)
            self.statuses[key] += 1
            self.by_kind[request.kind][key] += 1
            if status == 503 and failure is None:
                self.overloaded += 1
            if tolerated:
                self.tolerated[tolerated] += 1
            if failure:
                self.failure_count += 1
                if len(self.failures) < 20:
                    self.failures.append(f"{request.kind} {request.name}: {failure}")


def check(request, status, headers, body):
    """Returns why a reply is wrong for its request, or None."""
    if status == 503:
        try:
            code = json.loads(body)["error"]["code"]
        except (ValueError, KeyError, TypeError):
            code = None
        if request.kind != "probe" and code == "overloaded" and "retry-after" in headers:
            return None
        return f"503 with code {code!r}"
    if status not in request.allowed:
        return f"status {status}, expected one of {sorted(request.allowed)}: {body[:200]!r}"
    if "x-request-id" not in headers and not request.from_http_layer:
        return f"status {status} without X-Request-Id"
    return None


def client(port, mix, seed, stop_at, tally):
    rng = random.Random(seed)
    weights = [weight for weight, _ in mix]
    groups = [group for _, group in mix]
    while time.monotonic() < stop_at:
        request = rng.choice(rng.choices(groups, weights)[0])
        try:
            status, headers, body = send(port, request)
        except OSError as error:
            if request.kind == "oversized-chunked":
                # A reset while the rest of an oversized body is still being
                # sent can destroy the 413 before it is read.
                tally.record(request, "reset", tolerated="oversized upload reset")
            else:
                tally.record(request, "transport-error", failure=f"{type(error).__name__}: {error}")
            continue
        tally.record(request, status, failure=check(request, status, headers, body))
        if status == 503:
            time.sleep(0.05)


def rss_kib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} missing from /proc/{pid}/status")


def start_server(binary, log_path, concurrency):
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOST": "127.0.0.1",
        "PORT": "0",
        "API_KEYS": KEY,
        "RUST_LOG": "info",
        # Admit every client, so the run exercises the pipeline rather than
        # the 503 path; the request timeout still bounds the queue wait.
        "IMGFLUX_QUEUE_SIZE": str(concurrency),
    }
    # Service settings, and glibc allocator tuning such as MALLOC_ARENA_MAX.
    for name, value in os.environ.items():
        if name.startswith(("IMGFLUX_", "MALLOC_")):
            env[name] = value
    log = open(log_path, "w")
    process = subprocess.Popen([binary], env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"imgflux exited with {process.returncode}; see {log_path}")
        match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", Path(log_path).read_text())
        if match:
            return process, int(match.group(1))
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"imgflux did not start within 20 s; see {log_path}")


def run_phase(port, mix, concurrency, seconds, tally, seed):
    stop_at = time.monotonic() + seconds
    threads = [
        threading.Thread(target=client, args=(port, mix, seed * 1000 + index, stop_at, tally), daemon=True)
        for index in range(concurrency)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + REQUEST_TIMEOUT + 30)
    stuck = sum(thread.is_alive() for thread in threads)
    if stuck:
        raise RuntimeError(f"{stuck} client threads did not finish; a request hangs")


def idle_rss(process, log_path):
    """Waits for in-flight work to end and returns the server's RSS in KiB."""
    time.sleep(SETTLE_SECONDS)
    if process.poll() is not None:
        raise RuntimeError(f"imgflux exited with {process.returncode} during the run; see {log_path}")
    return rss_kib(process.pid)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", required=True, help="imgflux binary")
    parser.add_argument("--shared", required=True, type=Path, help="folder with corpus/ and bench-images/")
    parser.add_argument("--seconds", type=int, required=True, help="length of the measured run")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--json", type=Path, help="also write the summary here")
    parser.add_argument("--warmup-seconds", type=int, help="warm-up length (default: a tenth of the run, at least 45)")
    parser.add_argument(
        "--phase-seconds", type=int, default=0,
        help="split the measured run into phases of this length, with an idle RSS reading after each",
    )
    args = parser.parse_args()

    mix = build_mix(args.shared)
    # Idle RSS rises for about the first 45 s of load at concurrency 32, with
    # glibc's and musl's malloc alike, then stays nearly flat. The warm-up
    # covers that rise, so the growth check measures only what comes after.
    warmup = args.warmup_seconds if args.warmup_seconds is not None else max(45, args.seconds // 10)
    log_dir = Path(tempfile.mkdtemp(prefix="imgflux-soak-"))
    log_path = log_dir / "imgflux.log"
    process, port = start_server(args.bin, log_path, args.concurrency)
    print(f"soak: imgflux pid {process.pid} on 127.0.0.1:{port}, log {log_path}", flush=True)
    print(f"soak: {warmup} s warm-up, then {args.seconds} s at concurrency {args.concurrency}", flush=True)

    peak = {"rss": 0}
    sampling = threading.Event()

    def sample():
        while not sampling.is_set() and process.poll() is None:
            try:
                peak["rss"] = max(peak["rss"], rss_kib(process.pid))
            except (OSError, RuntimeError):
                break
            time.sleep(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()

    tally = Tally()
    # Idle RSS in MiB after each phase of the measured run.
    phases = []
    started = time.monotonic()
    try:
        run_phase(port, mix, args.concurrency, warmup, tally, seed=1)
        rss_warm = idle_rss(process, log_path)
        print(f"soak: idle RSS after warm-up {rss_warm / 1024:.1f} MiB", flush=True)
        phase_length = args.phase_seconds or args.seconds
        done = 0
        while done < args.seconds:
            length = min(phase_length, args.seconds - done)
            run_phase(port, mix, args.concurrency, length, tally, seed=2 + done)
            done += length
            rss_end = idle_rss(process, log_path)
            phases.append(round(rss_end / 1024, 1))
            if args.phase_seconds:
                print(f"soak: idle RSS after {done} s {rss_end / 1024:.1f} MiB", flush=True)
        hwm = rss_kib(process.pid, "VmHWM")
        health = send(port, probe_requests()[0])[0]
    finally:
        sampling.set()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            exit_code = process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()
            exit_code = "killed after 40 s"
    elapsed = time.monotonic() - started

    total = sum(tally.statuses.values())
    all_5xx = sum(count for status, count in tally.statuses.items() if status.isdigit() and int(status) >= 500)
    unexpected_5xx = all_5xx - tally.overloaded
    with open(log_path, errors="replace") as log:
        error_lines = sum(1 for line in log if re.match(r"\[\S+ ERROR", line))
    growth = (rss_end - rss_warm) / rss_warm
    summary = {
        "seconds": args.seconds,
        "warmup_seconds": warmup,
        "concurrency": args.concurrency,
        "requests": total,
        "requests_per_second": round(total / (warmup + args.seconds), 1),
        "statuses": dict(sorted(tally.statuses.items())),
        "by_kind": {kind: dict(sorted(counts.items())) for kind, counts in sorted(tally.by_kind.items())},
        "failures": tally.failure_count,
        "failure_examples": tally.failures,
        "tolerated": dict(tally.tolerated),
        "overloaded_503": tally.overloaded,
        "unexpected_5xx": unexpected_5xx,
        "error_log_lines": error_lines,
        "rss_after_warmup_mib": round(rss_warm / 1024, 1),
        "rss_at_end_mib": round(rss_end / 1024, 1),
        "rss_growth_percent": round(growth * 100, 1),
        "idle_rss_by_phase_mib": phases,
        "peak_rss_mib": round(max(peak["rss"], hwm) / 1024, 1),
        "health_after_run": health,
        "exit_code_after_sigterm": exit_code,
        "wall_seconds": round(elapsed, 1),
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")

    problems = []
    if tally.failure_count:
        problems.append(f"{tally.failure_count} requests got a wrong reply or failed in transport")
    if unexpected_5xx:
        problems.append(f"{unexpected_5xx} unexpected 5xx replies")
    if growth > MAX_RSS_GROWTH and rss_end - rss_warm > MAX_RSS_GROWTH_KIB:
        problems.append(
            f"idle RSS grew {growth * 100:.1f} % to {rss_end / 1024:.1f} MiB "
            f"(limit {MAX_RSS_GROWTH * 100:.0f} % and {MAX_RSS_GROWTH_KIB // 1024} MiB)"
        )
    if health != 200:
        problems.append(f"/health after the run: {health}")
    if exit_code != 0:
        problems.append(f"exit code after SIGTERM: {exit_code}")
    if problems:
        print("soak: FAILED: " + "; ".join(problems), file=sys.stderr)
        print(f"soak: server log kept at {log_path}", file=sys.stderr)
        return 1
    shutil.rmtree(log_dir)
    print(f"soak: passed ({total} requests in {warmup + args.seconds} s of load)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
