"""Peak memory of ingesting one object: what a small file with a large header costs the ingest function.

    python benchmarks/ingest_memory.py [--json out.json]

Each case runs :func:`loupe.ingest.ingest_object` once, in a fresh Python process, over an in-memory S3 stand-in
(GetObject answers the object with its ContentLength; CopyObject/PutObject are recorded) and an in-memory ledger,
so what is measured is ingest's own work: reading the body, the header check, the decode and any normalisation.
Reported per case: the outcome (status, reason), the growth of the process's peak resident set (``VmHWM``,
which sees Pillow's C buffers) over the peak after the imports and the input bytes were loaded, and tracemalloc's
peak (Python allocations only: the body's bytes and copies of it).

Cases: a 40-megapixel JPEG of ~1-2 MB (the memory attack: the file is small, its decode is 120 MB of RGB), the same
as CMYK with an EXIF rotation (decode, transpose and conversion to RGB: the most one upload costs), that worst case
at the 24-megapixel limit, a 20-megapixel EXIF-rotated JPEG (a large camera's frame), a 450x300 metal-tags sized
JPEG, and an object whose ContentLength is over the byte limit (its body must not be read).
The Lambda function's MemorySize is 512 MB (template.yaml, IngestImageFunction).
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import io, json, sys, tracemalloc
sys.path[:0] = [{layer!r}]
from loupe.ingest import ObjectRef, ingest_object

data = open({path!r}, "rb").read()
content_length = {content_length!r} or len(data)


class Body:
    def __init__(self):
        self.read_bytes = 0
        self._stream = io.BytesIO(data)

    def read(self, amt=None):
        out = self._stream.read() if amt is None else self._stream.read(amt)
        self.read_bytes += len(out)
        return out

    def close(self):
        pass


class S3:
    def __init__(self):
        self.body = Body()

    def get_object(self, **kw):
        return {{"Body": self.body, "ContentLength": content_length, "ETag": '"e"', "Metadata": {{}}}}

    def copy_object(self, **kw):
        pass

    def put_object(self, **kw):
        pass

    def head_object(self, **kw):
        return {{"ContentLength": content_length}}


class Ledger:
    def record_rejected(self, *a, **kw):
        return True

    def record_image(self, *a, **kw):
        return True, "unlabeled"


def peak_rss_kb():  # VmHWM: this process's peak resident set (ru_maxrss would carry the parent's across exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])


s3 = S3()
before = peak_rss_kb()
tracemalloc.start()
result = ingest_object(s3, Ledger(), ObjectRef(bucket="raw", key="raw/x.jpg"))
_, py_peak = tracemalloc.get_traced_memory()
after = peak_rss_kb()
print(json.dumps({{
    "status": result.status, "reason": result.reason, "body_bytes_read": s3.body.read_bytes,
    "rss_peak_growth_mb": round((after - before) / 1024, 1), "rss_peak_mb": round(after / 1024, 1),
    "tracemalloc_peak_mb": round(py_peak / 2**20, 1),
}}))
"""


def _jpeg(width: int, height: int, orientation: int = 1, mode: str = "RGB") -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), (120, 130, 140))
    draw = ImageDraw.Draw(image)
    for x in range(0, width, 97):  # some edges, so the file is not trivially small
        draw.line([(x, 0), (width - x, height)], fill=(x % 255, 40, 200), width=3)
    if mode != "RGB":
        image = image.convert(mode)
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=70, exif=exif.tobytes())
    return buf.getvalue()


def measure(path: Path, content_length: int | None = None) -> dict[str, Any]:
    code = CHILD.format(layer=str(REPO / "layers" / "common"), path=str(path), content_length=content_length)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="loupe-ingest-mem-") as tmp:
        cases = [
            ("40 MP JPEG (8000x5000)", _jpeg(8000, 5000), None),
            ("40 MP CMYK JPEG, EXIF rotated (8000x5000)", _jpeg(8000, 5000, orientation=6, mode="CMYK"), None),
            ("24 MP CMYK JPEG, EXIF rotated (6000x4000)", _jpeg(6000, 4000, orientation=6, mode="CMYK"), None),
            ("20 MP JPEG, EXIF rotated (5472x3648)", _jpeg(5472, 3648, orientation=6), None),
            ("metal-tags size JPEG (450x300)", _jpeg(450, 300), None),
            ("ContentLength 30 MB (over the 25 MB limit)", _jpeg(450, 300), 30 * 1024 * 1024),
        ]
        for name, data, content_length in cases:
            path = Path(tmp) / "object"
            path.write_bytes(data)
            result = measure(path, content_length)
            rows.append({"case": name, "file_bytes": len(data), **result})
    print("| case | file | outcome | body bytes read | peak RSS growth | tracemalloc peak |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        outcome = r["status"] + (f": {r['reason'][:60]}" if r["reason"] else "")
        print(
            f"| {r['case']} | {r['file_bytes'] / 2**20:.2f} MB | {outcome} | {r['body_bytes_read']} "
            f"| {r['rss_peak_growth_mb']} MB | {r['tracemalloc_peak_mb']} MB |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
