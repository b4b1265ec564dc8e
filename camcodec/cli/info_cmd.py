"""camcodec info: show what a .cam file holds, without torch (a version 3 file's streams are decoded to give each
tensor its share of them)."""

from __future__ import annotations

import argparse
import json
from typing import Any

import bitstream
from camcodec.camfile import read_source
from camcodec.roles import LATENT, WEIGHT, tensor_role

HELP = "show a .cam file's header: video info, model config, tensors (weights and latent grids), section sizes"


def setup_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="a .cam file")
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    data = read_source(args.input)
    try:
        description = with_roles(bitstream.describe(data))
    except bitstream.BitstreamError as exc:
        raise type(exc)(f"{args.input}: {exc}") from None
    print(json.dumps(description, indent=2) if args.json else format_description(description))
    return 0


def with_roles(description: dict[str, Any]) -> dict[str, Any]:
    """``bitstream.describe``'s dict with each tensor's role (weight or latent grid) and, per segment, the
    tensors, elements and bytes (table and payload) of each role."""
    for seg in description["segments"]:
        roles = {role: {"tensors": 0, "elements": 0, "bytes": 0} for role in (WEIGHT, LATENT)}
        for tensor in seg["tensors"]:
            tensor["role"] = tensor_role(tensor["name"])
            total = roles[tensor["role"]]
            total["tensors"] += 1
            total["elements"] += tensor["elements"]
            total["bytes"] += tensor["table_bytes"] + tensor["payload_bytes"]
        seg["roles"] = roles
    return description


def format_description(description: dict[str, Any]) -> str:
    """A short human-readable rendering of :func:`with_roles`' dict."""
    v = description["video"]
    size = description["file_bytes"]
    payloads = sum(seg["payload_bytes"] for seg in description["segments"])
    lines = [
        f"camcodec file, format version {description['format_version']}, {size} bytes"
        f" ({description['bpp']:.5f} bpp): payloads {100 * payloads / size:.1f} %,"
        f" headers and tables {100 * (1 - payloads / size):.1f} %",
        f"video: {v['width']}x{v['height']}, {v['num_frames']} frames at {v['fps_num']}/{v['fps_den']} fps,"
        f" {v['pix_fmt']}, {v['color_matrix']}",
        "sections: " + ", ".join(f"{s['tag']}@{s['offset']}+{s['length']}" for s in description["sections"]),
    ]
    for seg in description["segments"]:
        end = seg["first_frame"] + seg["num_frames"]
        stream = f" (one rANS stream of {seg['stream_bytes']} B)" if seg.get("stream_bytes") else ""
        lines.append(
            f"segment {seg['index']}: frames {seg['first_frame']}..{end - 1}, {len(seg['tensors'])} tensors,"
            f" {seg['elements']} elements, tables {seg['table_bytes']} B, payloads {seg['payload_bytes']} B{stream}"
        )
        for role, total in seg["roles"].items():
            lines.append(
                f"  {role + 's':<8} {total['tensors']:4d} tensors {total['elements']:10d} elements"
                f" {total['bytes']:9d} B  {100 * total['bytes'] / size:5.1f} % of the file"
            )
        lines.append("  model_config: " + json.dumps(seg["model_config"], sort_keys=True, separators=(",", ":")))
        for t in seg["tensors"]:
            bits = f"{t['bits']:2d} bits" if t["kind"] == "quantized" else t["kind"]
            shape = "x".join(str(d) for d in t["shape"])
            lines.append(
                f"  {t['name']:<32} {t['role']:<6} {shape:>16} {bits:>8}  coder {t['coder']:<5}"
                f"  table {t['table_bytes']:5d} B  payload {t['payload_bytes']:7d} B  {100 * t['share']:5.1f} % of the file"
            )
    return "\n".join(lines)
