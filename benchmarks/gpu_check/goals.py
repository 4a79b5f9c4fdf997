"""The results file's last section: each performance goal, met or not, from what the parts measured."""

from __future__ import annotations

import math
from collections.abc import Callable

from gpu_check.check import Check
from gpu_check.sizes import FULL_TRAIN_IMAGES


def verdict(value: float | None, ok: Callable[[float], bool], shown: str) -> str:
    if value is None:
        return "not measured"
    return f"{shown}: {'met' if ok(value) else 'not met'}"


def input_path(check: Check) -> list[str]:
    ours = check.paths.get(("bn", 128, "eager"))
    usual = ours.ratio("ours", "usual").median if ours else None
    fair = ours.ratio("ours", "usual_loader").median if ours else None
    return ["- our path >= 3x the usual pipeline, ResNet-14 bn at batch 128: "
            + verdict(usual, lambda r: r >= 3, f"{usual:.2f}x" if usual else ""),
            "- beside it, the fair measure of the input path, our path over the usual loader feeding our step "
            f"(b'), {check.sizes.workers} DataLoader workers: " + (f"{fair:.2f}x" if fair else "not measured")]


def compiled_steps(check: Check) -> list[str]:
    lines = []
    for batch in check.sizes.batches:
        mode = check.sizes.compile_modes[batch]
        bn, twin = check.paths.get(("bn", batch, mode)), check.paths.get(("torch_bn", batch, mode))
        slower = twin.median("model") / bn.median("model") if bn and twin else None
        lines.append(f"- compiled bn's step <= 1.2x torch_bn's (path c, {mode}, batch {batch}): "
                     + verdict(slower, lambda r: r <= 1.2, f"{slower:.2f}x" if slower else ""))
    clean = [counts.clean for counts in check.preflight.values()]
    lines.append("- the compiled bf16 step is one graph, without a graph break or a CUDA-graph skip (part 1): "
                 + ("not measured" if not clean else "met" if all(clean) else "not met"))
    return lines


def runs_per_gpu(check: Check) -> str:
    top = max(check.sizes.k_values)
    gain = check.k_gain(top)
    return (f"- K = {top} runs per GPU >= 4x the steady-state images/s of K = 1 (K train processes at once): "
            + verdict(gain, lambda g: g >= 4, f"{gain:.2f}x" if gain else ""))


def full_length_bn8(check: Check) -> str:
    """bn-8's steady epoch scaled to CIFAR-10's 50,000 images, plus what its stage spent once: start-up and
    the first epoch's compilation."""
    bn8 = check.train_timings.get("bn-8")
    minutes = None
    if bn8 and bn8.steady_epoch_s:
        per_epoch = bn8.steady_epoch_s * FULL_TRAIN_IMAGES / (bn8.train_images + bn8.val_images)
        once = bn8.first_epoch_extra_s + (bn8.startup_s if math.isfinite(bn8.startup_s) else 0.0)
        minutes = (bn8.epochs_planned * per_epoch + once) / 60
    return (f"- a full-length bn-8 run (compile {bn8.compile_mode if bn8 else 'n/a'}) on CIFAR-10 <= 10 min, its "
            "subset epochs scaled to 50,000 images, start-up and compilation added: "
            + verdict(minutes, lambda m: m <= 10, f"{minutes:.1f} min" if minutes else ""))


def study(check: Check) -> str:
    if not check.projected:
        return "- the projected full default study <= 15 min on one GPU: not measured"
    way, minutes = min(check.projected.items(), key=lambda item: item[1])
    return (f"- the projected full default study <= 15 min on one GPU, the fastest way measured ({way}): "
            + verdict(minutes, lambda m: m <= 15, f"{minutes:.1f} min"))


def goals(check: Check) -> list[str]:
    return [*input_path(check), *compiled_steps(check), runs_per_gpu(check), full_length_bn8(check), study(check)]
