#!/usr/bin/env python3
"""Helpers for scripts/bench.sh: process-tree sampling, reply inspection,
contract checks and the Markdown report.

Everything but the `check` subcommand uses the standard library only, so the
sampler runs with the system Python. `check` needs Pillow and runs in the
benchmark's virtual environment.
"""

import argparse
import collections
import io
import json
import os
import signal
import statistics
import struct
import sys
import time
import urllib.error
import urllib.request
import uuid
import zlib

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# The benchmark workloads: input file, query, expected output size and format.
WORKLOADS = {
    "a": ("photo-2mp-1600x1200.jpg", "w=800", (800, 600), "png"),
    "b": ("photo-2mp-1600x1200.jpg", "w=800&format=jpeg&q=80", (800, 600), "jpeg"),
    "c": ("icon-256x256.png", "w=64", (64, 64), "png"),
    "d": ("photo-12mp-4032x3024.jpg", "w=1024&format=jpeg", (1024, 768), "jpeg"),
}

# Targets for ImgFlux against the best peer, checked by the report.
TARGET_THROUGHPUT_RATIO = 1.5
TARGET_PEAK_RSS_MIB_D16 = 150
TARGET_IDLE_RSS_MIB = 10
TARGET_STARTUP_MS = 50


# ---------------------------------------------------------------------------
# Process-tree sampling


def read_process_table():
    """Return {pid: (ppid, cpu_ticks)} for every process in /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat_file:
                stat = stat_file.read()
        except OSError:
            continue
        # The command name may contain spaces and brackets, so the fields are
        # counted from the last ')'.
        fields = stat[stat.rindex(b")") + 2 :].split()
        table[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    return table


def find_tree(root_pid, table):
    children = collections.defaultdict(list)
    for pid, (ppid, _) in table.items():
        children[ppid].append(pid)
    tree, pending = [], [root_pid]
    while pending:
        pid = pending.pop()
        if pid in table:
            tree.append(pid)
            pending.extend(children[pid])
    return tree


def read_rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as status_file:
            for line in status_file:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def read_cpu_busy_ticks():
    """Return the machine's busy CPU time (all but idle and iowait) in ticks."""
    with open("/proc/stat") as stat_file:
        fields = [int(value) for value in stat_file.readline().split()[1:]]
    return sum(fields) - fields[3] - fields[4]


def tree_cpu_ticks(tree, table):
    return sum(table[pid][1] for pid in tree if pid in table)


def command_rss(args):
    table = read_process_table()
    print(sum(read_rss_kib(pid) for pid in find_tree(args.pid, table)))


def command_wait_idle(args):
    """Wait until a process tree uses under 5 % of one CPU over 200 ms, so
    requests left over from a warm-up do not overlap the measured run."""
    deadline = time.monotonic() + args.timeout
    window_s = 0.2
    idle_ticks = 0.05 * window_s * CLOCK_TICKS
    while time.monotonic() < deadline:
        table = read_process_table()
        before = tree_cpu_ticks(find_tree(args.pid, table), table)
        time.sleep(window_s)
        table = read_process_table()
        if tree_cpu_ticks(find_tree(args.pid, table), table) - before <= idle_ticks:
            return 0
    print(f"process tree {args.pid} still busy after {args.timeout} s", file=sys.stderr)
    return 1


def command_sample(args):
    """Sample the summed VmRSS of a process tree until SIGTERM, then print the
    peak and the CPU time the tree and the whole machine used meanwhile."""
    stop = False

    def request_stop(_signum, _frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    table = read_process_table()
    tree = find_tree(args.pid, table)
    start_tree_ticks = {pid: table[pid][1] for pid in tree}
    start_busy = read_cpu_busy_ticks()
    start_time = time.monotonic()
    next_tree_scan = start_time + 1.0
    peak_kib = sum(read_rss_kib(pid) for pid in tree)
    print("ready", flush=True)

    while not stop:
        time.sleep(args.interval)
        now = time.monotonic()
        # Rescanning /proc costs a few milliseconds, so new children (such as
        # a restarted worker) are looked for once a second only.
        if now >= next_tree_scan:
            tree = find_tree(args.pid, read_process_table())
            next_tree_scan = now + 1.0
        peak_kib = max(peak_kib, sum(read_rss_kib(pid) for pid in tree))

    elapsed = time.monotonic() - start_time
    table = read_process_table()
    tree = find_tree(args.pid, table)
    tree_ticks = sum(table[pid][1] - start_tree_ticks.get(pid, 0) for pid in tree)
    busy_ticks = read_cpu_busy_ticks() - start_busy
    print(
        f"peak_rss_kib={peak_kib} server_cpu_s={tree_ticks / CLOCK_TICKS:.2f} "
        f"machine_cpu_s={busy_ticks / CLOCK_TICKS:.2f} sampled_s={elapsed:.2f}",
        flush=True,
    )


# ---------------------------------------------------------------------------
# Reply inspection


def read_png_chunks(data):
    position = 8
    while position + 8 <= len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        yield kind, data[position + 8 : position + 8 + length]
        position += 12 + length


def describe_png(data):
    header, compressed = None, b""
    for kind, body in read_png_chunks(data):
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            compressed += body
    width, height, bit_depth, color_type, _, _, interlace = header
    colour = {0: "gray", 2: "RGB", 3: "palette", 4: "gray+alpha", 6: "RGBA"}[color_type]
    text = f"PNG {width}x{height} {colour} {bit_depth}-bit"
    if interlace == 0:
        channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color_type]
        stride = (width * channels * bit_depth + 7) // 8
        raw = zlib.decompress(compressed)
        filters = collections.Counter(raw[row * (stride + 1)] for row in range(height))
        names = ["none", "sub", "up", "average", "paeth"]
        mix = ", ".join(f"{names[kind]} {count}" for kind, count in filters.most_common())
        text += f"; row filters: {mix}"
    # FLEVEL in the zlib header: 0 is levels 0-1, 1 is 2-5, 2 is 6, 3 is 7-9.
    level = ["0-1", "2-5", "6", "7-9"][compressed[1] >> 6]
    return text + f"; zlib level {level}"


def describe_jpeg(data):
    position = 2
    while position + 4 <= len(data):
        marker = data[position + 1]
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        if marker in (0xC0, 0xC1, 0xC2):
            body = data[position + 4 : position + 2 + length]
            height, width = struct.unpack(">HH", body[1:5])
            components = body[5]
            sampling = body[7] if components >= 3 else 0x11
            subsampling = {0x11: "4:4:4", 0x21: "4:2:2", 0x22: "4:2:0"}.get(sampling, hex(sampling))
            kind = "progressive" if marker == 0xC2 else "baseline"
            return f"JPEG {width}x{height} {kind}, {components} components, {subsampling}"
        position += 2 + length
    return "JPEG without a frame header"


def describe_bytes(data):
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return describe_png(data)
    if data.startswith(b"\xff\xd8"):
        return describe_jpeg(data)
    return f"unknown format, first bytes {data[:8].hex()}"


def command_describe(args):
    with open(args.file, "rb") as reply_file:
        print(describe_bytes(reply_file.read()))


# ---------------------------------------------------------------------------
# Contract checks


def post_image(base_url, api_key, image_path, query):
    boundary = uuid.uuid4().hex
    with open(image_path, "rb") as image_file:
        image = image_file.read()
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="input"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode()
        + image
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        f"{base_url}/process?{query}",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}", "x-api-key": api_key},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read()


def mean_abs_difference(first, second):
    from PIL import ImageChops, ImageStat

    difference = ImageChops.difference(first.convert("RGB"), second.convert("RGB"))
    return sum(ImageStat.Stat(difference).mean) / 3


def check_workloads(args, failures):
    from PIL import Image

    for name, (file_name, query, size, image_format) in WORKLOADS.items():
        status, content_type, body = post_image(args.url, args.key, os.path.join(args.images, file_name), query)
        if status != 200:
            failures.append(f"workload {name}: expected status 200, got {status}: {body[:200]!r}")
            continue
        if content_type != f"image/{image_format}":
            failures.append(f"workload {name}: expected Content-Type image/{image_format}, got {content_type!r}")
        image = Image.open(io.BytesIO(body))
        if image.size != size:
            failures.append(f"workload {name}: expected {size[0]}x{size[1]}, got {image.width}x{image.height}")


def check_orientation(args, failures):
    """Check that EXIF orientations 2 to 8 give the same upright picture as
    orientation 1 (each test photo differs from the others only in a painted
    digit, so the mean difference stays small when the rotation is right)."""
    from PIL import Image

    pattern = os.path.join(args.corpus, "exif", "landscape_orientation_{}.jpg")
    if not os.path.exists(pattern.format(1)):
        print(f"note: {pattern.format(1)} not found, orientation not checked", file=sys.stderr)
        return
    upright = None
    for orientation in range(1, 9):
        status, _, body = post_image(args.url, args.key, pattern.format(orientation), "w=600&format=png")
        if status != 200:
            failures.append(f"orientation {orientation}: expected status 200, got {status}")
            continue
        image = Image.open(io.BytesIO(body))
        if image.size != (600, 400):
            failures.append(f"orientation {orientation}: expected 600x400, got {image.width}x{image.height}")
            continue
        if upright is None:
            upright = image
            continue
        difference = mean_abs_difference(upright, image)
        if difference > args.max_orientation_difference:
            failures.append(
                f"orientation {orientation}: mean difference {difference:.1f} from orientation 1 "
                f"exceeds {args.max_orientation_difference}, so the picture is not upright"
            )


def command_check(args):
    failures = []
    check_workloads(args, failures)
    check_orientation(args, failures)
    status, _, _ = post_image(args.url, "not-a-valid-key", os.path.join(args.images, WORKLOADS["c"][0]), "w=64")
    if status != 401:
        failures.append(f"wrong x-api-key: expected status 401, got {status}")
    for failure in failures:
        print(failure)
    return 1 if failures else 0


# ---------------------------------------------------------------------------
# Report


def parse_key_values(line):
    values = {}
    for field in line.rstrip("\n").split("\t"):
        key, separator, value = field.partition("=")
        if separator:
            values[key] = value
    return values


def read_records(path, kind):
    with open(path) as records_file:
        return [parse_key_values(line) for line in records_file if line.startswith(kind + "\t")]


class Cell:
    """One measured (server, workload, concurrency) combination."""

    def __init__(self, record):
        self.server = record["server"]
        self.workload = record["workload"]
        self.concurrency = int(record["concurrency"])
        duration_s = int(record["duration_us"]) / 1e6
        self.requests = int(record["requests"])
        self.status_errors = int(record["status"])
        self.socket_errors = sum(int(record[key]) for key in ("connect", "read", "write", "timeout"))
        successes = self.requests - self.status_errors
        self.ok_rps = successes / duration_s if duration_s > 0 else 0.0
        self.p50_ms = int(record["p50_us"]) / 1000
        self.p90_ms = int(record["p90_us"]) / 1000
        self.p99_ms = int(record["p99_us"]) / 1000
        self.peak_rss_mib = int(record["peak_rss_kib"]) / 1024
        self.cpu_ms_per_request = 1000 * float(record["server_cpu_s"]) / self.requests if self.requests else 0.0
        sampled_s = float(record["sampled_s"])
        other_cpu_s = float(record["machine_cpu_s"]) - float(record["server_cpu_s"])
        self.other_cpu_percent = 100 * other_cpu_s / (sampled_s * os.cpu_count()) if sampled_s else 0.0

    @property
    def errors(self):
        return self.status_errors + self.socket_errors


def format_ratio(value):
    return "n/a" if value is None else f"{value:.2f}×"


def render_cells(cells, servers):
    lines = []
    for workload, (file_name, query, _, _) in WORKLOADS.items():
        rows = sorted(
            (cell for cell in cells if cell.workload == workload),
            key=lambda cell: (cell.concurrency, servers.index(cell.server)),
        )
        if not rows:
            continue
        lines += [
            f"### Workload {workload}: `{file_name}`, `{query}`",
            "",
            "| server | conn | ok req/s | p50 ms | p90 ms | p99 ms | errors (non-2xx + socket) "
            "| peak RSS MiB | server CPU ms/req | other CPU % |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for cell in rows:
            lines.append(
                f"| {cell.server} | {cell.concurrency} | {cell.ok_rps:.1f} | {cell.p50_ms:.1f} | "
                f"{cell.p90_ms:.1f} | {cell.p99_ms:.1f} | {cell.status_errors} + {cell.socket_errors} | "
                f"{cell.peak_rss_mib:.1f} | {cell.cpu_ms_per_request:.1f} | {cell.other_cpu_percent:.0f} |"
            )
        lines.append("")
    return lines


def compare_with_peers(cells):
    """Yield (workload, concurrency, imgflux cell, best-throughput peer cell,
    lowest-p99 peer cell) for every cell that ImgFlux and a peer both ran."""
    by_key = collections.defaultdict(dict)
    for cell in cells:
        by_key[(cell.workload, cell.concurrency)][cell.server] = cell
    for (workload, concurrency), group in sorted(by_key.items()):
        ours = group.get("imgflux")
        peers = [cell for server, cell in group.items() if server != "imgflux"]
        if ours is None or not peers:
            continue
        fastest = max(peers, key=lambda cell: cell.ok_rps)
        lowest_p99 = min(peers, key=lambda cell: cell.p99_ms)
        yield workload, concurrency, ours, fastest, lowest_p99


def render_ratios(cells):
    comparisons = list(compare_with_peers(cells))
    if not comparisons:
        return []
    lines = [
        "### ImgFlux ÷ best peer",
        "",
        "Throughput ratio above 1 and p99 and RSS ratios below 1 favour ImgFlux. "
        "The best peer is the one with the highest throughput (for the throughput ratio), "
        "the lowest p99 (for the p99 ratio) or the lowest peak RSS (for the RSS ratio) in that cell.",
        "",
        "| workload | conn | throughput | best peer (req/s) | p99 | best peer (p99 ms) | peak RSS |",
        "| --- | ---: | ---: | --- | ---: | --- | ---: |",
    ]
    for workload, concurrency, ours, fastest, lowest_p99 in comparisons:
        throughput = ours.ok_rps / fastest.ok_rps if fastest.ok_rps else None
        p99 = ours.p99_ms / lowest_p99.p99_ms if lowest_p99.p99_ms else None
        peers = [cell for cell in cells if cell.workload == workload and cell.concurrency == concurrency]
        smallest = min((cell for cell in peers if cell.server != "imgflux"), key=lambda cell: cell.peak_rss_mib)
        rss = ours.peak_rss_mib / smallest.peak_rss_mib if smallest.peak_rss_mib else None
        lines.append(
            f"| {workload} | {concurrency} | {format_ratio(throughput)} | {fastest.server} ({fastest.ok_rps:.1f}) | "
            f"{format_ratio(p99)} | {lowest_p99.server} ({lowest_p99.p99_ms:.1f}) | {format_ratio(rss)} |"
        )
    lines.append("")
    return lines


class StartSummary:
    """Start-up time and idle RSS of one server over all its starts."""

    def __init__(self, records):
        self.server = records[0]["server"]
        self.version = records[0].get("version", "")
        self.starts = len(records)
        startup_ms = [float(record["startup_ms"]) for record in records]
        self.startup_ms_median = statistics.median(startup_ms)
        self.startup_ms_max = max(startup_ms)
        self.idle_rss_mib = statistics.median(int(record["idle_rss_kib"]) for record in records) / 1024


def summarize_starts(starts):
    by_server = {}
    for record in starts:
        by_server.setdefault(record["server"], []).append(record)
    return [StartSummary(records) for records in by_server.values()]


def find_target_misses(cells, starts):
    """Return one line per ImgFlux target that this run missed."""
    misses = []
    for workload, concurrency, ours, fastest, lowest_p99 in compare_with_peers(cells):
        where = f"workload {workload} at {concurrency} conn"
        if ours.ok_rps < TARGET_THROUGHPUT_RATIO * fastest.ok_rps:
            misses.append(
                f"{where}: throughput {ours.ok_rps:.1f} req/s is below {TARGET_THROUGHPUT_RATIO}× "
                f"{fastest.server}'s {fastest.ok_rps:.1f} req/s"
            )
        if ours.p99_ms > lowest_p99.p99_ms:
            misses.append(f"{where}: p99 {ours.p99_ms:.1f} ms is above {lowest_p99.server}'s {lowest_p99.p99_ms:.1f} ms")
    for cell in cells:
        if cell.server != "imgflux":
            continue
        if cell.errors:
            misses.append(
                f"workload {cell.workload} at {cell.concurrency} conn: {cell.status_errors} non-2xx replies "
                f"and {cell.socket_errors} socket errors"
            )
        if cell.workload == "d" and cell.concurrency == 16 and cell.peak_rss_mib > TARGET_PEAK_RSS_MIB_D16:
            misses.append(
                f"workload d at 16 conn: peak RSS {cell.peak_rss_mib:.1f} MiB exceeds {TARGET_PEAK_RSS_MIB_D16} MiB"
            )
    for summary in summarize_starts(starts):
        if summary.server != "imgflux":
            continue
        if summary.idle_rss_mib >= TARGET_IDLE_RSS_MIB:
            misses.append(f"idle RSS {summary.idle_rss_mib:.1f} MiB is not below {TARGET_IDLE_RSS_MIB} MiB")
        if summary.startup_ms_median >= TARGET_STARTUP_MS:
            misses.append(
                f"start to first /health answer took {summary.startup_ms_median:.1f} ms (median), "
                f"not below {TARGET_STARTUP_MS} ms"
            )
    return misses


def render_starts(starts, checks, replies):
    lines = [
        "### Servers",
        "",
        "Start-up time runs from the launch of the process to the first 200 reply from /health; "
        "it and the idle RSS (before the first request) are medians over all starts of the run.",
        "",
        "| server | version | starts | start → first /health ms (median / max) | idle RSS MiB | contract check |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    check_by_server = {check["server"]: check for check in checks}
    for summary in summarize_starts(starts):
        check = check_by_server.get(summary.server, {})
        lines.append(
            f"| {summary.server} | {summary.version} | {summary.starts} | "
            f"{summary.startup_ms_median:.1f} / {summary.startup_ms_max:.1f} | "
            f"{summary.idle_rss_mib:.1f} | {check.get('result', 'not run')} |"
        )
    lines += [
        "",
        "### One reply per server and workload",
        "",
        "The stage timings come from the Server-Timing header of that one request, sent to an idle server.",
        "",
        "| server | workload | bytes | reply | Server-Timing (ms) |",
        "| --- | --- | ---: | --- | --- |",
    ]
    for reply in replies:
        timing = reply.get("timing", "").replace(";dur=", " ")
        lines.append(
            f"| {reply['server']} | {reply['workload']} | {reply['bytes']} | {reply['description']} | {timing} |"
        )
    lines.append("")
    return lines


def command_report(args):
    cells = [Cell(record) for record in read_records(args.records, "cell")]
    starts = read_records(args.records, "start")
    checks = read_records(args.records, "check")
    replies = read_records(args.records, "reply")
    servers = [summary.server for summary in summarize_starts(starts)]
    with open(args.header) as header_file:
        lines = [header_file.read().rstrip(), ""]
    lines += render_starts(starts, checks, replies)
    lines += render_cells(cells, servers)
    lines += render_ratios(cells)
    if "imgflux" in servers and len(servers) > 1:
        misses = find_target_misses(cells, starts)
        lines += ["### ImgFlux targets missed in this run", ""]
        lines += [f"- {miss}" for miss in misses] or ["- none"]
        lines.append("")
    print("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    sample = commands.add_parser("sample", help="sample a process tree's RSS until SIGTERM")
    sample.add_argument("--pid", type=int, required=True)
    sample.add_argument("--interval", type=float, default=0.1, help="seconds between samples")
    sample.set_defaults(run=command_sample)

    rss = commands.add_parser("rss", help="print a process tree's summed VmRSS in KiB")
    rss.add_argument("--pid", type=int, required=True)
    rss.set_defaults(run=command_rss)

    wait_idle = commands.add_parser("wait-idle", help="wait until a process tree is idle")
    wait_idle.add_argument("--pid", type=int, required=True)
    wait_idle.add_argument("--timeout", type=float, default=60, help="seconds to wait at most")
    wait_idle.set_defaults(run=command_wait_idle)

    describe = commands.add_parser("describe", help="describe a PNG or JPEG reply in one line")
    describe.add_argument("file")
    describe.set_defaults(run=command_describe)

    check = commands.add_parser("check", help="check a server's replies against the contract (needs Pillow)")
    check.add_argument("--url", required=True, help="base URL, such as http://127.0.0.1:3100")
    check.add_argument("--key", required=True, help="a valid x-api-key")
    check.add_argument("--images", required=True, help="folder with the benchmark images")
    check.add_argument("--corpus", required=True, help="folder with the test corpus (exif/ is used)")
    check.add_argument("--max-orientation-difference", type=float, default=8.0)
    check.set_defaults(run=command_check)

    report = commands.add_parser("report", help="print the Markdown report")
    report.add_argument("--records", required=True, help="file of start, check, reply and cell records")
    report.add_argument("--header", required=True, help="Markdown text that opens the report")
    report.set_defaults(run=command_report)

    args = parser.parse_args()
    sys.exit(args.run(args) or 0)


if __name__ == "__main__":
    main()
