"""The fast paths against plain references: batched augmentation vs torchvision, the Stepper (channels_last,
bf16 autocast, torch.compile, gate clipping, per-batch schedule) vs a textbook training loop, the norms
under bf16, and the process-wide switches of configure_torch.

Every comparison is with something written independently here (torchvision, a plain SGD loop, torch's
functional norms in float64), never with the code's own earlier output.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import chi2, chi2_contingency, chisquare
from torch import nn

from cifarlab.cli import check_compile_toolchain, configure_torch
from cifarlab.config import PerformanceConfig
from cifarlab.errors import CifarlabError
from cifarlab.loader import EpochPlan, Normalizer, ResidentDataset, crop_flip
from cifarlab.models.resnet import CifarResNet
from cifarlab.norms import (
    BatchInstanceNorm2d,
    BatchNorm2d,
    GroupNorm2d,
    InstanceNorm2d,
    LayerNorm2d,
    gate_parameters,
    get_norm_layer,
)
from cifarlab.training import Stepper, amp_dtype_for

CPU = torch.device("cpu")
MEAN = (0.49, 0.48, 0.45)
STD = (0.25, 0.24, 0.26)
CONFIDENCE = 0.999  # chi-square tests reject above this quantile; the seeds are fixed, so never flaky


# --- 1. batched crop/flip is the torchvision augmentation ------------------------------------------------

DRAWS = 3000


def _position_image() -> torch.Tensor:
    """A (3, 32, 32) uint8 image whose pixels say where they are: channel 0 = row + 1, channel 1 =
    column + 1, channel 2 = 255. Every real pixel is nonzero, so zero padding is told apart."""
    index = torch.arange(32)
    return torch.stack([(index[:, None] + 1).expand(32, 32), (index[None, :] + 1).expand(32, 32),
                        torch.full((32, 32), 255)]).to(torch.uint8)


def _reference_crop_flip(image: torch.Tensor, dy: int, dx: int, flip: bool) -> torch.Tensor:
    """One image: zero-pad by 4, take the 32x32 window at (dy, dx) of the padded image, then mirror."""
    crop = F.pad(image, (4, 4, 4, 4))[:, dy:dy + 32, dx:dx + 32]
    return crop.flip(-1) if flip else crop


def _recover(crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dy, dx, flip) of each crop of `_position_image`, read off the centre pixels (never padding).

    Output row 16 is padded row dy + 16, i.e. image row dy + 12, so channel 0 there is dy + 13. Column 16
    is the crop's column 16 (image column dx + 12) or, flipped, its column 15 (image column dx + 11).
    """
    rows, cols = crops[:, 0].long(), crops[:, 1].long()
    flip = cols[:, 16, 15] > cols[:, 16, 16]
    return rows[:, 16, 16] - 13, cols[:, 16, 16] - 13 + flip.long(), flip


def _reference_crops(image: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """`_reference_crop_flip` of `image` for each (dy, dx, flip): the 162 possible crops made one at a time,
    then picked per draw."""
    table = torch.stack([_reference_crop_flip(image, y, x, f)
                         for y in range(9) for x in range(9) for f in (False, True)])
    return table[(dy * 9 + dx) * 2 + flip.long()]


def _torchvision_draws(image: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    from torchvision import transforms

    augment = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()])
    with torch.random.fork_rng(devices=[]):  # torchvision draws from the global generator
        torch.manual_seed(seed)
        return torch.stack([augment(image) for _ in range(n)])


def _cell_counts(dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor) -> dict[str, np.ndarray]:
    return {"offsets": np.bincount((dy * 9 + dx).numpy(), minlength=81),
            "flips": np.bincount(flip.long().numpy(), minlength=2),
            "joint": np.bincount(((dy * 9 + dx) * 2 + flip.long()).numpy(), minlength=162)}


def _assert_offsets_span_0_to_8(source: str, dy: torch.Tensor, dx: torch.Tensor) -> None:
    for offset in (dy, dx):
        assert offset.min() == 0 and offset.max() == 8, source  # exactly the 9 offsets 0..8


def test_crop_flip_with_epoch_plan_is_distributed_like_torchvision_randomcrop_and_flip():
    image = _position_image()

    theirs = _torchvision_draws(image, DRAWS, seed=0)
    t_dy, t_dx, t_flip = _recover(theirs)
    _assert_offsets_span_0_to_8("torchvision", t_dy, t_dx)
    # The decoding is right, and torchvision's transform is exactly pad + slice + flip.
    assert torch.equal(theirs, _reference_crops(image, t_dy, t_dx, t_flip))

    plan = EpochPlan.draw(DRAWS, seed=0, epoch=1)
    ours = crop_flip(image.expand(DRAWS, -1, -1, -1)[plan.order], plan.dy, plan.dx, plan.flip)
    o_dy, o_dx, o_flip = _recover(ours)
    _assert_offsets_span_0_to_8("crop_flip", o_dy, o_dx)
    # crop_flip applied exactly the plan's crop and flip to every image.
    assert torch.equal(o_dy, plan.dy) and torch.equal(o_dx, plan.dx) and torch.equal(o_flip, plan.flip)
    assert torch.equal(ours, _reference_crops(image, o_dy, o_dx, o_flip))

    counts = {"torchvision": _cell_counts(t_dy, t_dx, t_flip), "crop_flip": _cell_counts(o_dy, o_dx, o_flip)}
    for source, cells in counts.items():
        # Uniform over the 9x9 offsets, fair flips, and the two independent (joint uniform over 162 cells).
        for kind, observed in cells.items():
            statistic = chisquare(observed).statistic
            assert statistic < chi2.ppf(CONFIDENCE, len(observed) - 1), (source, kind, statistic)
    for kind in ("offsets", "flips", "joint"):
        # Two-sample: the two pipelines' cell counts come from the same distribution.
        test = chi2_contingency(np.stack([counts["torchvision"][kind], counts["crop_flip"][kind]]), correction=False)
        assert test.statistic < chi2.ppf(CONFIDENCE, test.dof), (kind, test.statistic)


# --- 2. Stepper on the CPU against a plain training loop -------------------------------------------------


def _tiny_model(norm: str = "bn", seed: int = 0) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CifarResNet(1, 10, get_norm_layer(norm, groups=4))


def _uint8_batches(sizes: tuple[int, ...], seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
             torch.randint(0, 10, (n,), generator=g)) for n in sizes]


def _normalized(batches, channels_last: bool = False, device: torch.device = CPU):
    normalize = Normalizer(MEAN, STD, device, channels_last=channels_last)
    return [(normalize(x.to(device)), y.to(device)) for x, y in batches]


def _sgd(model: nn.Module, lr: float, schedule: Callable[[int], float]):
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def _stepper(model: nn.Module, *, lr: float = 0.1, schedule: Callable[[int], float] = lambda step: 1.0,
             device: torch.device = CPU, **options) -> Stepper:
    optimizer, scheduler = _sgd(model, lr, schedule)
    return Stepper(model, optimizer, scheduler, device=device, **options)


def _plain_training(model: nn.Module, batches, *, lr: float = 0.1,
                    schedule: Callable[[int], float] = lambda step: 1.0) -> tuple[list[float], list[int]]:
    """The textbook loop: forward, loss, zero_grad, backward, step, schedule; per-step mean loss and correct."""
    optimizer, scheduler = _sgd(model, lr, schedule)
    model.train()
    losses, correct = [], []
    for images, labels in batches:
        logits = model(images)
        loss = F.cross_entropy(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        correct.append(int((logits.argmax(1) == labels).sum()))
    return losses, correct


def _assert_same_parameters(a: nn.Module, b: nn.Module, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=rtol, atol=atol, msg=name)


def test_stepper_run_returns_the_plain_loops_summed_loss_correct_count_images_seen_and_mean_lr():
    sizes = (5, 8, 3)  # a smaller last batch: the summed loss must weight each batch by its size
    batches = _normalized(_uint8_batches(sizes))
    model = _tiny_model()
    twin = copy.deepcopy(model)
    schedule = lambda step: 0.5 ** step  # noqa: E731 - a changing lr, so each step's lr matters

    loss_sum, correct, seen, mean_lr = _stepper(model, lr=0.1, schedule=schedule).run(iter(batches))

    losses, corrects = _plain_training(twin, batches, schedule=schedule)
    assert seen == sum(sizes)
    assert 0 <= correct <= seen
    assert correct == sum(corrects)
    assert loss_sum == pytest.approx(sum(loss * n for loss, n in zip(losses, sizes)), rel=1e-5)
    assert mean_lr == pytest.approx(0.1 * (1 + 0.5 + 0.25) / 3)  # the lrs its three steps used
    _assert_same_parameters(model, twin)  # it trained: the optimizer updated the model's own weights


def test_stepper_channels_last_gives_the_losses_of_contiguous_and_leaves_conv_weights_channels_last():
    raw = _uint8_batches((8, 8, 8))
    model = _tiny_model()
    twin = copy.deepcopy(model)

    fast = _stepper(model, channels_last=True).run(_normalized(raw, channels_last=True))
    plain = _stepper(twin, channels_last=False).run(_normalized(raw, channels_last=False))

    assert fast[0] == pytest.approx(plain[0], rel=1e-4)
    assert fast[1:] == plain[1:]
    _assert_same_parameters(model, twin)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    # A 3x3 conv weight with several input channels cannot be both layouts, so this is not vacuous.
    assert not any(m.weight.is_contiguous() for m in convs if m.in_channels > 1)


def test_stepper_bf16_autocast_on_cpu_gives_bf16_logits_a_float32_loss_near_the_float32_loss():
    (images, labels), = _normalized(_uint8_batches((8,)))
    model = _tiny_model()
    twin = copy.deepcopy(model)
    stepper = _stepper(model, amp_dtype=torch.bfloat16)

    _, loss, logits = stepper.forward(images, labels)
    assert logits.dtype == torch.bfloat16
    assert loss.dtype == torch.float32

    bf16_sum, _, seen, _ = stepper.run([(images, labels)])
    (float32_loss,), _ = _plain_training(twin, [(images, labels)])
    assert bf16_sum / seen == pytest.approx(float32_loss, abs=5e-2)
    assert bf16_sum / seen != float32_loss  # autocast really was on: bf16 rounding shows


def test_amp_dtype_for_is_bf16_only_on_cuda_when_asked():
    on = PerformanceConfig(channels_last=True, bf16=True, deterministic=False, compile="none")
    off = PerformanceConfig(channels_last=True, bf16=False, deterministic=False, compile="none")
    assert amp_dtype_for(on, torch.device("cuda")) is torch.bfloat16
    assert amp_dtype_for(on, CPU) is None
    assert amp_dtype_for(off, torch.device("cuda")) is None


def test_stepper_clips_bin_gates_into_0_1_after_a_step_that_pushes_them_out():
    model = _tiny_model("bin")
    twin = copy.deepcopy(model)
    (images, labels), = _normalized(_uint8_batches((8,)))
    gates = gate_parameters(model)
    others = [p for p in model.parameters() if all(p is not g for g in gates)]
    huge = 1e6
    optimizer = torch.optim.SGD([{"params": others, "lr": 0.01}, {"params": gates, "lr": huge}])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)

    Stepper(model, optimizer, scheduler, device=CPU).run([(images, labels)])

    # Reference: the unclipped plain SGD step on the twin, then the clamp of Nam & Kim 2018.
    F.cross_entropy(twin.train()(images), labels).backward()
    unclipped = torch.cat([(g - huge * g.grad).detach() for g in gate_parameters(twin)])
    assert (unclipped < 0).any() and (unclipped > 1).any()  # the step really leaves [0, 1] both ways
    clipped = torch.cat([g.detach() for g in gates])
    torch.testing.assert_close(clipped, unclipped.clamp(0, 1), rtol=0, atol=1e-6)


def test_stepper_steps_the_scheduler_once_per_batch_after_the_optimizer():
    model = _tiny_model()
    base = 0.1
    stepper = _stepper(model, lr=base, schedule=lambda step: 0.5 ** step)
    batches = _normalized(_uint8_batches((4, 4, 4, 4, 4)))
    with warnings.catch_warnings():
        # torch warns when the scheduler steps before the optimizer.
        warnings.filterwarnings("error", message=".*lr_scheduler.step.*")
        stepper.run(batches[:3])
        assert stepper.optimizer.param_groups[0]["lr"] == pytest.approx(base * 0.5 ** 3)
        stepper.run(batches[3:])
    assert stepper.optimizer.param_groups[0]["lr"] == pytest.approx(base * 0.5 ** 5)
    assert stepper.scheduler.last_epoch == 5


# --- 3. the from-scratch norms under bf16 ----------------------------------------------------------------

N, C, H, W = 4, 8, 6, 6
GROUPS = 4
EPS = 1e-5
NORMS: dict[str, Callable[[int], nn.Module]] = {
    "bn": BatchNorm2d, "in": InstanceNorm2d, "bin": BatchInstanceNorm2d, "ln": LayerNorm2d,
    "gn": lambda c: GroupNorm2d(c, groups=GROUPS),
}


def _reference_norm(name: str, x: torch.Tensor, module: nn.Module, training: bool) -> torch.Tensor:
    """torch's functional norms in float64; BIN as rho * BN + (1 - rho) * IN under one affine."""
    x = x.double()
    w, b = module.weight.detach().double(), module.bias.detach().double()
    running = (module.running_mean.double(), module.running_var.double()) if hasattr(module, "running_mean") else None
    if name == "in":
        return F.instance_norm(x, weight=w, bias=b, eps=EPS)
    if name in ("ln", "gn"):
        return F.group_norm(x, 1 if name == "ln" else GROUPS, w, b, eps=EPS)
    bn = F.batch_norm(x, *(running if not training else (None, None)), training=training, eps=EPS)
    if name == "bn":
        return bn * w.view(1, -1, 1, 1) + b.view(1, -1, 1, 1)
    rho = module.rho.detach().double().view(1, -1, 1, 1)
    mixed = rho * bn + (1 - rho) * F.instance_norm(x, eps=EPS)
    return mixed * w.view(1, -1, 1, 1) + b.view(1, -1, 1, 1)


@pytest.mark.parametrize("autocast", [False, True], ids=["plain", "autocast"])
@pytest.mark.parametrize("name", list(NORMS))
def test_norm_of_a_bf16_input_is_bf16_and_equals_the_rounded_norm_of_the_float32_upcast(name, autocast):
    g = torch.Generator().manual_seed(5)
    # A large offset next to a small spread: statistics taken in bf16 (8 bits of mantissa, a step of
    # 0.5 near 100) would be off by ~0.1 standard deviations.
    offset = 100 + torch.randn(1, C, 1, 1, generator=g) * 20
    x16 = (offset + torch.randn(N, C, H, W, generator=g) * 3).bfloat16().requires_grad_()
    x32 = x16.detach().float().requires_grad_()  # exact: every bf16 value is a float32
    module = NORMS[name](C)
    with torch.no_grad():
        module.weight.copy_(torch.rand(C, generator=g) + 0.5)
        module.bias.copy_(torch.randn(C, generator=g))
        if name == "bin":
            module.rho.copy_(torch.rand(C, generator=g))
    twin = copy.deepcopy(module)
    context = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else torch.autocast("cpu", enabled=False)

    for training in (True, False):
        module.train(training), twin.train(training)
        with context:
            out16 = module(x16)
        out32 = twin(x32)
        assert out16.dtype == torch.bfloat16, training
        # Computed in float32 exactly as from the upcast, then rounded once.
        torch.testing.assert_close(out16, out32.bfloat16(), rtol=0, atol=0, msg=f"training={training}")
        reference = _reference_norm(name, x32.detach(), twin, training)
        torch.testing.assert_close(out16.detach().double(), reference, rtol=2 ** -8, atol=1e-4,
                                   msg=f"training={training}")
        if training:
            for buffer in ("running_mean", "running_var"):
                if hasattr(module, buffer):
                    torch.testing.assert_close(getattr(module, buffer), getattr(twin, buffer), rtol=1e-6, atol=1e-6)
            grad = torch.randn(N, C, H, W, generator=g).bfloat16()  # what a bf16 layer above sends back
            out16.backward(grad)
            out32.backward(grad.float())
            assert x16.grad.dtype == torch.bfloat16
            torch.testing.assert_close(x16.grad, x32.grad.bfloat16(), rtol=0, atol=0)
            for (pname, p), q in zip(module.named_parameters(), twin.parameters()):
                torch.testing.assert_close(p.grad, q.grad, rtol=1e-6, atol=1e-6, msg=pname)


# --- 4. torch.compile ------------------------------------------------------------------------------------


def _needs_cxx() -> None:
    try:
        check_compile_toolchain(PerformanceConfig(channels_last=True, bf16=False, deterministic=False,
                                                  compile="default"), CPU)
    except CifarlabError as missing:
        pytest.skip(str(missing))


@pytest.mark.slow
@pytest.mark.parametrize("norm", ["torch_bn", "bn", "in", "bin", "ln", "gn"])
def test_compiled_stepper_on_cpu_gives_the_eager_losses_weights_and_buffers_in_one_graph(norm):
    _needs_cxx()
    raw = _uint8_batches((8, 8, 8))
    model = _tiny_model(norm)
    twin = copy.deepcopy(model)
    compiled = _stepper(model, compile_mode="default")
    eager = _stepper(twin, compile_mode="none")
    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters
    counters.clear()
    try:
        compiled_losses = [compiled.run([batch])[0] for batch in _normalized(raw)]
        graphs = counters["stats"]["unique_graphs"]
        breaks = dict(counters["graph_break"])
        eager_losses = [eager.run([batch])[0] for batch in _normalized(raw)]
    finally:
        torch._dynamo.reset()
    # The forward went through dynamo and inductor, not silently eager; one graph for all three steps, so
    # the norms neither break it nor recompile it on every call.
    assert graphs == 1 and not breaks, (graphs, breaks)
    assert compiled_losses == pytest.approx(eager_losses, rel=1e-4)
    _assert_same_parameters(model, twin)
    for (name, ours), theirs in zip(model.named_buffers(), twin.buffers()):  # BN's running statistics
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5, msg=name)


# --- 5. configure_torch ----------------------------------------------------------------------------------


@pytest.fixture
def torch_globals(monkeypatch):
    """Restore determinism, cuDNN autotuning and CUBLAS_WORKSPACE_CONFIG after the test."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark = torch.backends.cudnn.benchmark
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)  # monkeypatch puts it back afterwards
    yield
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    torch.backends.cudnn.benchmark = benchmark


def _performance(deterministic: bool) -> PerformanceConfig:
    return PerformanceConfig(channels_last=True, bf16=True, deterministic=deterministic, compile="none")


def test_configure_torch_deterministic_turns_on_deterministic_algorithms_and_fixes_the_cublas_workspace(
        torch_globals):
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.benchmark = True
    configure_torch(_performance(deterministic=True))
    assert torch.are_deterministic_algorithms_enabled()
    assert not torch.backends.cudnn.benchmark
    # The two settings cuBLAS documents as deterministic.
    assert os.environ.get("CUBLAS_WORKSPACE_CONFIG") in (":4096:8", ":16:8")


def test_configure_torch_keeps_a_cublas_workspace_the_user_set(torch_globals, monkeypatch):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    configure_torch(_performance(deterministic=True))
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_configure_torch_not_deterministic_turns_determinism_off_and_cudnn_autotuning_on(torch_globals):
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    configure_torch(_performance(deterministic=False))
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.benchmark


# --- 6. the GPU path -------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_stepper_bf16_channels_last_on_cuda_tracks_cpu_float32_on_the_same_batches():
    cuda = torch.device("cuda")
    g = torch.Generator().manual_seed(2)
    images = torch.randint(0, 256, (24, 3, 32, 32), dtype=torch.uint8, generator=g).numpy()
    labels = torch.randint(0, 10, (24,), generator=g).numpy()
    host, device = ResidentDataset(images, labels, CPU), ResidentDataset(images, labels, cuda)
    # The epoch plan is drawn on the CPU, so both devices see the same batches.
    host_batches = list(host.train_batches(8, seed=0, epoch=1, normalize=Normalizer(MEAN, STD, CPU)))
    device_batches = list(device.train_batches(8, seed=0, epoch=1,
                                               normalize=Normalizer(MEAN, STD, cuda, channels_last=True)))
    for (x, y), (xd, yd) in zip(host_batches, device_batches, strict=True):
        torch.testing.assert_close(xd.cpu(), x, rtol=1e-6, atol=1e-6)
        assert torch.equal(yd.cpu(), y)

    model = _tiny_model()
    twin = copy.deepcopy(model).to(cuda)
    on_cpu = _stepper(model, lr=0.01)
    on_gpu = _stepper(twin, lr=0.01, device=cuda, channels_last=True, amp_dtype=torch.bfloat16)
    cpu_losses = [on_cpu.run([batch])[0] / 8 for batch in host_batches]
    gpu_losses = [on_gpu.run([batch])[0] / 8 for batch in device_batches]
    assert gpu_losses == pytest.approx(cpu_losses, abs=5e-2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("norm", ["bn", "bin", "gn"])
def test_stepper_compiled_with_cuda_graphs_gives_the_eager_losses_weights_and_buffers(norm):
    cuda = torch.device("cuda")
    batches = _normalized(_uint8_batches((8, 8, 8, 8)), channels_last=True, device=cuda)
    model = _tiny_model(norm).to(cuda)
    twin = copy.deepcopy(model)
    graphed = _stepper(model, device=cuda, channels_last=True, compile_mode="reduce-overhead")
    eager = _stepper(twin, device=cuda, channels_last=True)
    torch._dynamo.reset()
    try:
        graphed_losses = [graphed.run([batch])[0] for batch in batches]  # records, then replays the graph
    finally:
        torch._dynamo.reset()
    eager_losses = [eager.run([batch])[0] for batch in batches]
    assert graphed_losses == pytest.approx(eager_losses, rel=1e-3)
    _assert_same_parameters(model, twin, rtol=1e-3, atol=1e-4)
    for (name, ours), theirs in zip(model.named_buffers(), twin.buffers()):
        torch.testing.assert_close(ours, theirs, rtol=1e-3, atol=1e-4, msg=name)
