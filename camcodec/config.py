"""Encoder configuration: defaults < preset < explicit options, and model sizing for a clip."""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, replace
from typing import Any

from camcodec.device import DEVICE_NAMES, is_device_name
from camcodec.errors import InputError
from camcodec.model import ARCHITECTURES, ArchConfig, architecture
from camcodec.model.common import points_spaced
from camcodec.optim import OPTIMIZERS
from camcodec.values import parse_duration

LOSSES = ("mse", "log-mse", "l1-msssim")
PRECISIONS = ("auto", "fp32", "bf16")
# A target rate is landed by the quantization step, between 4 bits' (7 levels) and 8 bits' (127).
MIN_TARGET_BITS, MAX_TARGET_BITS = 4, 8
# Coded bits per weight after quantization (at the bit width's full levels) and rANS: the estimate that
# sizes a model for a target rate before training; the quantization step then lands the target on the
# real coded size. Measured on cam-nerv2 (bunny 320x180, 60 frames, 59,220 params after 250 epochs):
# 2.68 / 3.76 / 4.79 / 5.82 / 6.83 at 7 / 15 / 31 / 63 / 127 levels; cam-nerv measured the same (6.8 at
# 8 bits on carphone).
CODED_BITS_PER_WEIGHT = {4: 2.7, 5: 3.8, 6: 4.8, 7: 5.8, 8: 6.8}
# Networks are sized for 4 bits' step by default: trained against the rate (learned steps), the larger the
# network for the same bits, the better at equal encode time, up to 4 bits' size (1.4x 5 bits', 1.9x 6 bits');
# a still larger one (~2 bits per weight) measured no better (docs/architecture.md, 4).
DEFAULT_BITS = 4


def coded_bits_per_weight(bits: int) -> float:
    """The estimated coded size of a weight quantized to ``bits`` (``CODED_BITS_PER_WEIGHT``)."""
    return CODED_BITS_PER_WEIGHT.get(bits, bits * 0.85)


def params_for_target(target_bpp: float, bits: int) -> float:
    """Parameters per pixel x frame for a network that, quantized to ``bits``, codes to ``target_bpp``."""
    return target_bpp / coded_bits_per_weight(bits)


# The rate ladder: a few named rates, each a network sized to code to about that many bits per pixel at
# the default bits. Trained against the rate, the file lands the rung's rate; with --rate-weight 0 it lands
# near it (content decides the rest).
RUNG_BPP = {"xs": 0.01, "s": 0.03, "m": 0.08, "l": 0.2, "xl": 0.4}
DEFAULT_RATE = "m"
RATES: dict[str, dict[str, Any]] = {
    name: {"params_per_pixel": round(params_for_target(bpp, DEFAULT_BITS), 5), "bits": DEFAULT_BITS}
    for name, bpp in RUNG_BPP.items()
}


# CAM's grids get a point every FRAMES_PER_CAM_POINT frames, at most MAX_CAM_POINTS: at `fast`, 0.08 bpp, a
# point every ~4 frames beat one per frame on the 30-frame dev clip (+0.15 and +0.30 dB over two seeds) and
# was level to +0.1 dB against one every 2 on the 60-frame ones; one every 2 or 8 lost on the 120-frame one
# (docs/architecture.md, 7). Clips of 124 frames or more keep 32, as before.
FRAMES_PER_CAM_POINT = 4
MAX_CAM_POINTS = 32


def cam_points_for(num_frames: int) -> int:
    """CAM grid points for a clip of ``num_frames``: spaced about ``FRAMES_PER_CAM_POINT`` frames apart, 2 to
    ``MAX_CAM_POINTS``."""
    return max(2, min(MAX_CAM_POINTS, points_spaced(num_frames, FRAMES_PER_CAM_POINT)))


# Presets set the encode effort (training passes over the frames); the rate is set apart (--rate, --bpp).
# On 2 CPU cores, bunny 320x180 x 60 frames: medium 20-23 min, fast a quarter of its passes
# (docs/architecture.md). A network sized for 4 bits takes ~1.3x (1 thread) to 1.5x (2 threads) the time
# per pass of 5 bits' size: these are the passes that took the time of 230 and 920 passes of the latter.
# The default network's flow level costs 9-17 % of a step (0.91x the steps/s at 320x180, 0.83x at 176x144):
# 7/8 of those passes (160 and 640) keep the encode time.
# SOAP's optimizer step (the default since section 25) leaves 0.91-0.93x Adam's steps/s at 320x180 (one thread):
# 130 and 520 passes instead of 140 and 560.
# A clip shorter than MIN_PASS_FRAMES trains the steps of one that long (the length the presets' effort and time
# are given for): a network needs a number of steps to converge whatever the clip's length, and its passes alone
# leave a short clip far from it (10 frames at `fast`: 6x the steps, +1.8 to +3.0 dB at equal bits; two held-out
# clips of 10 and 17 frames: -39 % BD-rate; docs/architecture.md section 19).
MIN_PASS_FRAMES = 60
PRESETS: dict[str, dict[str, Any]] = {
    "fast": {"epochs": 130},
    "medium": {"epochs": 520},
}
DEFAULT_PRESET = "medium"


def option(
    help: str,
    group: str,
    *,
    flag: str | None = None,
    metavar: str | None = None,
    parse: Callable[[str], Any] | None = None,
) -> dict[str, Any]:
    """A config field's command-line face (dataclass field metadata): its help, its group in ``--help``,
    its flag when that is not ``--field-name``, and ``parse`` for a value written as text that is not a
    plain number (a duration). The encode command is built from these."""
    return {"help": help, "group": group, "flag": flag, "metavar": metavar, "parse": parse}


def flag_of(name: str) -> str:
    """The command-line flag of an ``EncodeConfig`` field (``batch_size`` -> ``--batch-size``)."""
    return _FIELDS[name].metadata["flag"] or "--" + name.replace("_", "-")


@dataclass(frozen=True)
class EncodeConfig:
    """How to encode one clip. Rate is set by ``params_per_pixel`` and ``bits``; quality also by ``epochs``.

    Each field declares its command-line option (``option``): help, group and flag live here only.
    """

    params_per_pixel: float = field(
        default=RATES[DEFAULT_RATE]["params_per_pixel"],
        metadata=option("model size: network parameters per pixel x frame", "rate", metavar="P"),
    )
    epochs: int = field(
        default=PRESETS[DEFAULT_PRESET]["epochs"],
        metadata=option(
            f"training passes over all frames (a clip of fewer than {MIN_PASS_FRAMES} frames trains as many steps as "
            f"one of {MIN_PASS_FRAMES})",
            "training",
        ),
    )
    steps: int | None = field(
        default=None, metadata=option("training steps in total, each a batch of frames (overrides epochs)", "training")
    )
    time_budget: float | None = field(
        default=None,
        metadata=option(
            "encode in about this long: the training steps are planned from the step rate measured on this "
            "machine, instead of --preset's passes (20m, 1h30m, 90s)",
            "training",
            flag="--time",
            metavar="DURATION",
            parse=parse_duration,
        ),
    )
    batch_size: int = field(default=2, metadata=option("frames per training step", "training"))
    lr: float | None = field(
        default=None, metadata=option("peak learning rate (none: the architecture's own)", "training")
    )
    precision: str = field(
        default="auto",
        metadata=option(
            f"training arithmetic: {', '.join(PRECISIONS)} (bf16: bfloat16 autocast; auto: bf16 where the hardware "
            "computes it natively, AMX CPUs and GPUs; the file is rendered and measured in fp32 either way)",
            "training",
        ),
    )
    grid_lr: float = field(
        default=5.0, metadata=option("latent grids learn this many times faster than the weights", "training")
    )
    warmup: float = field(
        default=0.2, metadata=option("fraction of training with a linear warm-up from 0.1 x lr", "training")
    )
    # 0.99, not Adam's 0.999: a 60-frame clip trains 4,200 steps at `fast`, and a shorter memory of the gradients' scale
    # measured -2.4 % bits at equal PSNR on the dev set and -2.8 % on the held-out clips at `fast`, 4 rates
    # (6 clips of 7 better; docs/architecture.md, section 23).
    beta2: float = field(
        default=0.99,
        metadata=option(
            "second-moment decay of Adam and SOAP (and of SOAP's Kronecker factors): a memory of about "
            "1 / (1 - beta2) steps",
            "training",
        ),
    )
    # SOAP, not Adam: at equal encode time (`fast`, 4 rates) -17 % bits at equal RGB PSNR on the dev set and -12 % on
    # the held-out clips, every clip better (docs/architecture.md, section 25).
    optimizer: str = field(
        default="soap",
        metadata=option(
            f"the training phase's optimizer: {', '.join(OPTIMIZERS)} (soap: Adam in the eigenbasis of Shampoo's "
            "preconditioner for the weight matrices; fine-tuning and QAT run Adam either way)",
            "training",
        ),
    )
    loss: str = field(
        default="log-mse",
        metadata=option(
            f"training loss: {', '.join(LOSSES)} (log-mse: the mean of each frame's log MSE, as mean PSNR weighs them)",
            "training",
        ),
    )
    bits: int = field(
        default=DEFAULT_BITS,
        metadata=option("quantization bits per weight, 2-16 (with --bpp: the width it is sized for)", "rate"),
    )
    prune: float = field(
        default=0.0, metadata=option("fraction of conv/linear weights zeroed by magnitude pruning, 0-1", "rate")
    )
    finetune: float = field(
        default=0.1, metadata=option("fine-tuning after pruning, as a fraction of the training steps", "training")
    )
    finetune_lr: float = field(
        default=0.1, metadata=option("fine-tuning phases start at this x the peak learning rate", "training")
    )
    qat: float | None = field(
        default=None,
        metadata=option(
            "quantization-aware fine-tuning, as a fraction of the training steps (none: 0.1 below 8 bits)", "rate"
        ),
    )
    rate_weight: float = field(
        default=0.5,
        metadata=option(
            "train against the rate with learned quantization steps: minimize ln(distortion) + KAPPA x "
            "estimated bpp / target bpp (0: distortion only)",
            "rate",
            metavar="KAPPA",
        ),
    )
    rate_control: float = field(
        default=0.0,
        metadata=option(
            "with --rate-weight: steer KAPPA so that the estimated rate meets the target while the steps are "
            "learned, and holds the landed rate while fine-tuning: ln KAPPA moves by GAIN x ln(estimate / aim) "
            "each step (0: KAPPA fixed)",
            "rate",
            metavar="GAIN",
        ),
    )
    rate_from: float = field(
        default=0.0,
        metadata=option(
            "with --rate-weight: the fraction of training done on float weights first", "rate", metavar="FRACTION"
        ),
    )
    target_bpp: float | None = field(
        default=None,
        metadata=option(
            "target bits per pixel: size, bits and pruning chosen to land it", "rate", flag="--bpp", metavar="BPP"
        ),
    )
    arch: str = field(
        default="cam-nerv2", metadata=option(f"network architecture: {', '.join(ARCHITECTURES)}", "model")
    )
    model_params: tuple[tuple[str, Any], ...] = field(
        default=(),
        metadata=option(
            "fields of the architecture's model config, e.g. upsample=bilinear:kernels=1,3,3,3",
            "model",
            metavar="KEY=VALUE[:KEY=VALUE...]",
        ),
    )
    cam: bool = field(
        default=True, metadata=option("plain NeRV: no feature normalization or CAM grids", "model", flag="--no-cam")
    )
    cam_points: int | None = field(
        default=None,
        metadata=option(
            f"points of the CAM grids along time (none: one every {FRAMES_PER_CAM_POINT} frames, at most "
            f"{MAX_CAM_POINTS})",
            "model",
        ),
    )
    min_params: int = field(default=2_000, metadata=option("floor of the network's size for tiny clips", "model"))
    device: str = field(default="auto", metadata=option(DEVICE_NAMES, "device"))
    seed: int = field(default=0, metadata=option("random seed: the same seed gives the same file", "training"))

    def validate(self) -> None:
        """Each field in its range; a message names the field's flag, as the user typed it."""
        checks = [
            ("params_per_pixel", self.params_per_pixel > 0, "must be > 0"),
            ("epochs", self.epochs >= 1, "must be >= 1"),
            ("steps", self.steps is None or self.steps >= 1, "must be >= 1"),
            ("time_budget", self.time_budget is None or self.time_budget > 0, "must be positive"),
            ("batch_size", self.batch_size >= 1, "must be >= 1"),
            ("lr", self.lr is None or self.lr > 0, "must be > 0"),
            ("grid_lr", self.grid_lr > 0, "must be > 0"),
            ("warmup", 0 <= self.warmup < 1, "must be in [0, 1)"),
            ("beta2", 0 < self.beta2 < 1, "must be in (0, 1)"),
            ("optimizer", self.optimizer in OPTIMIZERS, f"must be one of {', '.join(OPTIMIZERS)}"),
            ("loss", self.loss in LOSSES, f"must be one of {', '.join(LOSSES)}"),
            ("precision", self.precision in PRECISIONS, f"must be one of {', '.join(PRECISIONS)}"),
            ("bits", 2 <= self.bits <= 16, "must be in 2..16"),
            ("prune", 0 <= self.prune < 1, "must be in [0, 1)"),
            ("finetune", 0 <= self.finetune <= 1, "must be in [0, 1]"),
            ("qat", 0 <= (self.qat or 0) <= 1, "must be in [0, 1]"),
            ("finetune_lr", 0 < self.finetune_lr <= 1, "must be in (0, 1]"),
            ("rate_weight", self.rate_weight >= 0, "must be >= 0"),
            ("rate_control", 0 <= self.rate_control <= 1, "must be in [0, 1]"),
            ("rate_from", 0 <= self.rate_from < 1, "must be in [0, 1)"),
            (
                "prune",
                self.rate_weight == 0 or self.prune == 0,
                "does not apply with learned steps (--rate-weight > 0): add --rate-weight 0",
            ),
            ("target_bpp", self.target_bpp is None or 0 < self.target_bpp <= 24, "must be in (0, 24]"),
            ("cam_points", self.cam_points is None or 2 <= self.cam_points <= 4096, "must be in 2..4096"),
            ("arch", self.arch in ARCHITECTURES, f"must be one of {', '.join(ARCHITECTURES)}, got {self.arch!r}"),
            ("device", is_device_name(self.device), f"must be {DEVICE_NAMES}, got {self.device!r}"),
        ]
        for name, ok, message in checks:
            if not ok:
                raise InputError(f"{flag_of(name)} {message}")

    def nominal_bpp(self, parameters: int, pixels: int) -> float:
        """The rate aimed at: the target, or else the estimate for a network of ``parameters`` at ``bits``
        over ``pixels`` (W x H x frames)."""
        if self.target_bpp is not None:
            return self.target_bpp
        return parameters * coded_bits_per_weight(self.bits) / pixels

    @staticmethod
    def pass_frames(num_frames: int) -> int:
        """The frames a pass counts for a clip of ``num_frames``: its own, at least ``MIN_PASS_FRAMES``."""
        return max(num_frames, MIN_PASS_FRAMES)

    def total_steps(self, num_frames: int) -> int:
        """Steps of the main training phase: ``steps``, or ``epochs`` passes over ``pass_frames``."""
        if self.steps is not None:
            return self.steps
        return self.epochs * math.ceil(self.pass_frames(num_frames) / self.batch_size)

    @property
    def peak_lr(self) -> float:
        return self.lr if self.lr is not None else architecture(self.arch).lr

    def qat_fraction(self, levels: int | None) -> float:
        """QAT pays for steps coarser than 8 bits' (127 levels); at 8 bits rounding costs ~0.01 dB and QAT
        only time. ``levels`` None: learned steps (rate in the loss), always followed by QAT."""
        if self.qat is not None:
            return self.qat
        return 0.1 if levels is None or levels < 127 else 0.0

    def phase_steps(self, num_frames: int, fraction: float) -> int:
        """Steps of a fine-tuning phase that lasts ``fraction`` of the training (0 when fraction is 0)."""
        return math.ceil(fraction * self.total_steps(num_frames)) if fraction > 0 else 0


def resolve_config(preset: str = DEFAULT_PRESET, rate: str | None = None, **overrides: Any) -> EncodeConfig:
    """Defaults, then the preset, then the rate rung, then every override that is not None.

    An override is named by its field or by its flag, as on the command line (``target_bpp=`` or
    ``bpp=``, ``time_budget=`` or ``time="20m"``); a text value of a field with its own parser (a
    duration) is parsed. ``rate`` and a target both set the rate, and ``time`` and steps or passes both
    set the effort: either pair is refused.
    """
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    if rate is not None and rate not in RATES:
        raise InputError(f"unknown rate {rate!r}; choose from {', '.join(RATES)}")
    named = {FLAG_NAMES.get(key, key): value for key, value in overrides.items()}
    unknown = set(named) - set(_FIELDS)
    if unknown:
        raise InputError(f"unknown encode options: {', '.join(sorted(unknown))}")
    given = {k: _parsed(k, v) for k, v in named.items() if v is not None}
    if rate is not None and "target_bpp" in given:
        raise InputError("--rate and --bpp both set the rate: give one of them")
    effort = [name for name in ("steps", "epochs") if name in given]
    if "time_budget" in given and effort:
        raise InputError(f"--time and {flag_of(effort[0])} both set the effort: give one of them")
    config = replace(EncodeConfig(), **{**PRESETS[preset], **(RATES[rate] if rate else {})})
    config = replace(config, **given)
    config.validate()
    return config


def _parsed(name: str, value: Any) -> Any:
    """A field's value, parsed by the field's own parser when it comes as text, and a whole number given
    to a float field as a float (``rate_weight=0`` is the command's ``--rate-weight 0``: the same encode,
    the same checkpoint)."""
    parse = _FIELDS[name].metadata["parse"]
    if parse is not None and isinstance(value, str):
        return parse(value)
    if isinstance(value, int) and not isinstance(value, bool) and float in _HINT_TYPES[name]:
        return float(value)
    return value


_FIELDS = {item.name: item for item in fields(EncodeConfig)}
#: The types each field's hint allows (``float | None`` -> (float, NoneType)).
_HINT_TYPES = {name: typing.get_args(hint) or (hint,) for name, hint in typing.get_type_hints(EncodeConfig).items()}
#: Field names by their flag's name (``bpp`` -> ``target_bpp``), for the API's keyword arguments.
FLAG_NAMES = {
    flag_of(name)[2:].replace("-", "_"): name
    for name, item in _FIELDS.items()
    if item.metadata["flag"] and not flag_of(name).startswith("--no-")
}


def size_model(width: int, height: int, num_frames: int, config: EncodeConfig) -> ArchConfig:
    """The config of the ``config.arch`` network that fits the clip's parameter budget
    (``params_per_pixel`` x pixels x frames, at least ``min_params``)."""
    budget = max(config.params_per_pixel * width * height * num_frames, config.min_params)
    cam_points = cam_points_for(num_frames) if config.cam_points is None else config.cam_points
    try:
        return architecture(config.arch).sized(
            width, height, num_frames, budget, cam=config.cam, cam_points=cam_points, **dict(config.model_params)
        )
    except (TypeError, ValueError) as exc:
        raise InputError(f"model options for {config.arch}: {exc}") from None


def _convert(key: str, text: str, hint: Any) -> Any:
    """A command-line value as the type a config field declares (``int | None``, ``tuple[int, ...]``, ...)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if text.lower() == "none" and type(None) in typing.get_args(hint):
            return None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        return tuple(_convert(key, part, item) for part in text.split(",") if part)
    try:
        if hint is bool:
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("true", "1", "yes")
        return hint(text) if hint in (int, float, str) else text
    except ValueError:
        raise InputError(f"option {key}={text}: expected {getattr(hint, '__name__', hint)}") from None


def parse_options(pairs: Iterable[str]) -> dict[str, Any]:
    """``key=value`` texts -> ``resolve_config`` keyword arguments, each value typed by its field.

    Keys are ``EncodeConfig`` fields, or else fields of the architecture's model config (``arch=``
    among the pairs, or the default), which go into ``model_params``: ``arch=cam-nerv``, ``bits=6``,
    ``strides=4,2,2`` (a tuple).
    """
    texts = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InputError(f"expected key=value, got {pair!r}")
        name = key.strip().replace("-", "_")
        texts[FLAG_NAMES.get(name, name)] = value.strip()
    hints = typing.get_type_hints(EncodeConfig)
    options = {
        k: _parsed(k, v) if _FIELDS[k].metadata["parse"] else _convert(k, v, hints[k])
        for k, v in texts.items()
        if k in hints and k != "model_params"
    }
    rest = {k: v for k, v in texts.items() if k not in options}
    if rest:
        try:
            arch = architecture(options.get("arch", EncodeConfig.arch))
        except ValueError as exc:
            raise InputError(str(exc)) from None
        model_hints = typing.get_type_hints(arch.config)
        unknown = sorted(set(rest) - set(model_hints) - {"arch", "width", "height", "num_frames"})
        if unknown:
            raise InputError(
                f"unknown option {unknown[0]!r}: neither an encode option nor a field of the {arch.config.arch} model"
            )
        options["model_params"] = tuple((k, _convert(k, v, model_hints[k])) for k, v in rest.items())
    return options
