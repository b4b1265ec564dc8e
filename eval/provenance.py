"""What made a row of results, besides its settings: the code (commit, dirty or not), the libraries, the
machine, and for camcodec the resolved device, precision, torch threads and seed.

A stored row is reused only when its provenance matches the one this run would record: a row measured by
another commit, in another precision (``auto`` is bfloat16 on AMX CPUs and float32 elsewhere) or with
other threads is measured again, so that a table never mixes what different code made.
"""

from __future__ import annotations

import json
from typing import Any

import av

import camcodec
from eval.bench.machine import cpu_model, git_commit


def provenance(codec_facts: dict[str, Any]) -> str:
    """The provenance of a row of a codec whose own facts are ``codec_facts``, as compact JSON (sorted
    keys), the form it is stored and compared in."""
    facts = {
        "commit": git_commit(),
        "camcodec": camcodec.__version__,
        "pyav": av.__version__,
        "ffmpeg": av.ffmpeg_version_info,
        "cpu": cpu_model(),
        **codec_facts,
    }
    return json.dumps(facts, sort_keys=True, separators=(",", ":"))


def camcodec_facts(device: str, options: dict[str, Any], threads: int | None) -> dict[str, Any]:
    """camcodec's own: torch's version, the device and training precision that ``device`` and the encode
    ``options`` (``EncodeConfig`` fields) resolve to on this machine, torch's threads (``threads``, or
    this process's), the seed."""
    import torch

    from camcodec.config import resolve_config
    from camcodec.device import resolve_device, trains_in_bf16

    config = resolve_config(**{**options, "device": device})
    resolved = resolve_device(config.device)
    return {
        "torch": torch.__version__,
        "device": str(resolved),
        "gpu": torch.cuda.get_device_name(resolved) if resolved.type == "cuda" else None,
        "precision": "bf16" if trains_in_bf16(config.precision, resolved) else "fp32",
        "threads": threads if threads is not None else torch.get_num_threads(),
        "seed": config.seed,
    }
