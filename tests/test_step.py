"""cifarlab.train.step: the Stepper (channels_last, bf16 autocast, torch.compile, gate clipping, per-batch
schedule) against a textbook training loop written here, on the CPU and, where there is one, on a GPU."""

from __future__ import annotations

import copy
import functools
import math
import warnings
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cifarlab.config.sections import PerformanceConfig
from cifarlab.data.loader import Normalizer, ResidentDataset
from cifarlab.errors import CifarlabError
from cifarlab.models.resnet import CifarResNet
from cifarlab.nn.norm_registry import NORM_LAYERS, get_norm_layer
from cifarlab.nn.norms import gate_parameters
from cifarlab.train.device import check_compile_toolchain
from cifarlab.train.optim import l1_penalty, penalized_weights
from cifarlab.train.step import Stepper, amp_dtype_for

CPU = torch.device("cpu")
MEAN = (0.49, 0.48, 0.45)
STD = (0.25, 0.24, 0.26)


# --- on the CPU against a plain training loop -----------------------------------------------------------


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
    # The correct counts come from argmax over logits that the two layouts sum in different orders: a tie
    # broken differently moves a count by one on some CPUs, so counts agree to one image per batch.
    assert abs(fast[1] - plain[1]) <= 3 and fast[2:] == plain[2:]
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


# --- torch.compile ----------------------------------------------------------------------------------------


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
    # In float64: inductor's float32 kernels round differently from eager's, and how differently depends
    # on the CPU's vector width (AVX2 or AVX-512); three steps at lr 0.1 through a per-image norm (IN) turn
    # that into weight differences near 1e-4 on one CPU and not on another. In float64 they stay near 1e-8,
    # so a tight tolerance tests the computation rather than the machine.
    batches = [(images.double(), labels) for images, labels in _normalized(_uint8_batches((8, 8, 8)))]
    model = _tiny_model(norm).double()
    twin = copy.deepcopy(model)
    compiled = _stepper(model, compile_mode="default")
    eager = _stepper(twin, compile_mode="none")
    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters
    counters.clear()
    try:
        compiled_losses = [compiled.run([batch])[0] for batch in batches]
        graphs = counters["stats"]["unique_graphs"]
        breaks = dict(counters["graph_break"])
        eager_losses = [eager.run([batch])[0] for batch in batches]
    finally:
        torch._dynamo.reset()
    # The forward went through dynamo and inductor, not silently eager; one graph for all three steps, so
    # the norms neither break it nor recompile it on every call.
    assert graphs == 1 and not breaks, (graphs, breaks)
    assert compiled_losses == pytest.approx(eager_losses, rel=1e-5)
    _assert_same_parameters(model, twin, rtol=1e-5, atol=1e-6)
    for (name, ours), theirs in zip(model.named_buffers(), twin.buffers()):  # BN's running statistics
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6, msg=name)


def test_a_compiled_stepper_traces_one_static_batch_size_and_runs_a_smaller_last_batch_eagerly(monkeypatch):
    # torch.compile replaced by a recorder of what the compiled forward is called with: no compiler needed.
    compiled_calls, compile_options = [], []

    def recording_compile(forward, **options):
        compile_options.append(options)

        def compiled(images, labels):
            compiled_calls.append(len(labels))
            return forward(images, labels)

        return compiled

    monkeypatch.setattr(torch, "compile", recording_compile)
    sizes = (8, 8, 3, 8, 3)  # two epochs of 19 images in batches of 8
    batches = _normalized(_uint8_batches(sizes))
    model = _tiny_model()
    twin = copy.deepcopy(model)

    compiled = _stepper(model, compile_mode="reduce-overhead")
    totals = compiled.run(batches[:3]), compiled.run(batches[3:])

    assert compile_options == [{"mode": "reduce-overhead", "dynamic": False}]
    assert compiled_calls == [8, 8, 8] and compiled.static_batch == 8
    eager = _stepper(twin)
    assert totals == (eager.run(batches[:3]), eager.run(batches[3:]))  # every image trained on, in the same steps
    _assert_same_parameters(model, twin, rtol=0, atol=0)


@pytest.mark.slow
def test_compiled_stepper_on_cpu_compiles_once_for_epochs_with_a_smaller_last_batch():
    _needs_cxx()
    # Two epochs of 19 images, in float64 for the reason the test above gives.
    batches = [(images.double(), labels) for images, labels in _normalized(_uint8_batches((8, 8, 3, 8, 8, 3)))]
    model = _tiny_model().double()
    twin = copy.deepcopy(model)
    compiled = _stepper(model, compile_mode="default")
    eager = _stepper(twin)
    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters
    counters.clear()
    try:
        compiled_totals = [compiled.run(batches[:3]), compiled.run(batches[3:])]
        graphs = counters["stats"]["unique_graphs"]
    finally:
        torch._dynamo.reset()
    eager_totals = [eager.run(batches[:3]), eager.run(batches[3:])]
    # One graph, for batches of 8; the batches of 3 did not make dynamo trace another, static or dynamic.
    assert graphs == 1
    for ours, theirs in zip(compiled_totals, eager_totals):
        assert ours.loss_sum == pytest.approx(theirs.loss_sum, rel=1e-5)
        assert ours.seen == theirs.seen == 19
    _assert_same_parameters(model, twin, rtol=1e-5, atol=1e-6)


# --- the GPU path -----------------------------------------------------------------------------------------
# Each compiled test compiles a ResNet-8's step once, for its norm and batch size (seconds each on a GPU host).

CUDA = torch.device("cuda")
NORMS = tuple(NORM_LAYERS)

def _cuda_graph_launches(step: Callable[[], object]) -> int:
    """How many CUDA graphs `step` launched, from the profiler's record of CUDA runtime calls (a graph the
    compiler skipped, or ran eagerly, launches none)."""
    activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=activities) as profile:
        step()
        torch.cuda.synchronize()
    return sum("cudaGraphLaunch" in event.name for event in profile.events())


def _without_host_syncs(batches):
    """Yield `batches` with CUDA's sync debug mode raising at any operation that makes the host wait for the
    device, from the first step to the end of the last (not the one read of the totals after it)."""
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield from batches
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.gpu
@pytest.mark.parametrize("norm", NORMS)
def test_stepper_bf16_channels_last_on_cuda_tracks_cpu_float32_on_the_same_batches(norm):
    g = torch.Generator().manual_seed(2)
    images = torch.randint(0, 256, (24, 3, 32, 32), dtype=torch.uint8, generator=g).numpy()
    labels = torch.randint(0, 10, (24,), generator=g).numpy()
    host, device = ResidentDataset(images, labels, CPU), ResidentDataset(images, labels, CUDA)
    # The epoch plan is drawn on the CPU, so both devices see the same batches.
    host_batches = list(host.train_batches(8, seed=0, epoch=1, normalize=Normalizer(MEAN, STD, CPU)))
    device_batches = list(device.train_batches(8, seed=0, epoch=1,
                                               normalize=Normalizer(MEAN, STD, CUDA, channels_last=True)))
    for (x, y), (xd, yd) in zip(host_batches, device_batches, strict=True):
        torch.testing.assert_close(xd.cpu(), x, rtol=1e-6, atol=1e-6)
        assert torch.equal(yd.cpu(), y)

    model = _tiny_model(norm)
    twin = copy.deepcopy(model).to(CUDA)
    on_cpu = _stepper(model, lr=0.01)
    on_gpu = _stepper(twin, lr=0.01, device=CUDA, channels_last=True, amp_dtype=torch.bfloat16)
    _, _, logits = on_gpu.forward(*device_batches[0])
    assert logits.dtype == torch.bfloat16  # autocast was on
    cpu_losses = [on_cpu.run([batch])[0] / 8 for batch in host_batches]
    gpu_losses = [on_gpu.run([batch])[0] / 8 for batch in device_batches]
    assert all(math.isfinite(loss) for loss in gpu_losses)
    assert gpu_losses == pytest.approx(cpu_losses, rel=2e-2, abs=5e-2)


@pytest.mark.gpu
@pytest.mark.parametrize("batch", [8, 128])
@pytest.mark.parametrize("norm", NORMS)
def test_reduce_overhead_on_cuda_replays_one_cuda_graph_for_every_norm_and_tracks_eager(norm, batch):
    partial = batch // 2  # an epoch's smaller last batch, as 40,000 images leave 64 in batches of 128
    sizes = (batch, batch, batch, partial, batch, batch)
    batches = _normalized(_uint8_batches(sizes), channels_last=True, device=CUDA)
    model = _tiny_model(norm).to(CUDA)
    twin = copy.deepcopy(model)
    graphed = _stepper(model, lr=0.01, device=CUDA, channels_last=True, amp_dtype=torch.bfloat16,
                       compile_mode="reduce-overhead")
    eager = _stepper(twin, lr=0.01, device=CUDA, channels_last=True, amp_dtype=torch.bfloat16)
    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters
    counters.clear()
    try:
        # The first calls warm up and record the graphs, later ones replay them; the partial batch runs eagerly.
        graphed_totals = [graphed.run([b]) for b in batches[:-1]]
        launches = _cuda_graph_launches(lambda: graphed_totals.append(graphed.run(batches[-1:])))
        graphs, skips = counters["stats"]["unique_graphs"], counters["inductor"]["cudagraph_skips"]
    finally:
        torch._dynamo.reset()
    eager_totals = [eager.run([b]) for b in batches]

    assert graphs == 1 and graphed.static_batch == batch  # one graph, of full batches: the partial one made none
    assert skips == 0  # the compiler ran every graph under CUDA graphs, none eagerly
    assert launches >= 2  # the last step replayed the forward's graph and the backward's
    assert [t.seen for t in graphed_totals] == list(sizes)
    assert [t.loss_sum / t.seen for t in graphed_totals] == pytest.approx(
        [t.loss_sum / t.seen for t in eager_totals], rel=1e-2, abs=2e-2)
    _assert_same_parameters(model, twin, rtol=1e-2, atol=2e-3)
    for (name, ours), theirs in zip(model.named_buffers(), twin.buffers()):  # BN's running statistics
        torch.testing.assert_close(ours, theirs, rtol=1e-2, atol=2e-3, msg=name)
    if norm == "bin":
        gates = torch.cat([g.detach() for g in gate_parameters(model)])
        assert ((gates >= 0) & (gates <= 1)).all()


@pytest.mark.gpu
def test_l1_penalty_under_cuda_graphs_gives_the_eager_losses_and_weights_in_float32():
    batches = _normalized(_uint8_batches((8,) * 6), channels_last=True, device=CUDA)
    model = _tiny_model("bn").to(CUDA)
    twins = copy.deepcopy(model), copy.deepcopy(model)
    coefficient = 1e-2  # its gradient, coefficient * sign(w), moves each weight by about 1e-3 in six steps

    def l1_stepper(m: nn.Module, **options) -> Stepper:
        return _stepper(m, lr=0.01, device=CUDA, channels_last=True,
                        penalty=functools.partial(l1_penalty, penalized_weights(m), coefficient), **options)

    graphed, eager = l1_stepper(model, compile_mode="reduce-overhead"), l1_stepper(twins[0])
    unpenalized = _stepper(twins[1], lr=0.01, device=CUDA, channels_last=True)
    objective, loss, _ = eager.forward(*batches[0])
    assert float((objective - loss).detach()) == pytest.approx(
        coefficient * sum(float(p.detach().abs().sum()) for p in penalized_weights(twins[0])), rel=1e-4)
    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters
    counters.clear()
    try:
        graphed_losses = [graphed.run([b])[0] for b in batches[:-1]]
        launches = _cuda_graph_launches(lambda: graphed_losses.append(graphed.run(batches[-1:])[0]))
        skips = counters["inductor"]["cudagraph_skips"]
    finally:
        torch._dynamo.reset()
    eager_losses = [eager.run([b])[0] for b in batches]
    for b in batches:
        unpenalized.run([b])

    assert skips == 0 and launches >= 2
    assert graphed_losses == pytest.approx(eager_losses, rel=1e-3)  # replays see each step's batch and weights
    _assert_same_parameters(model, twins[0], rtol=1e-3, atol=1e-4)
    with pytest.raises(AssertionError):  # and the penalty did move the weights
        _assert_same_parameters(model, twins[1], rtol=1e-3, atol=1e-4)


@pytest.mark.gpu
@pytest.mark.parametrize(("norm", "compile_mode", "l1"), [("bn", "none", 0.0), ("bn", "reduce-overhead", 0.0),
                                                          ("bin", "reduce-overhead", 0.0), ("bn", "none", 1e-4)],
                         ids=["eager", "cuda-graphs", "cuda-graphs-bin-gates", "eager-l1"])
def test_a_training_step_on_cuda_never_makes_the_host_wait(norm, compile_mode, l1):
    sizes = (8, 8, 8, 8, 8, 4, 8, 8)
    batches = _normalized(_uint8_batches(sizes), channels_last=True, device=CUDA)
    model = _tiny_model(norm).to(CUDA)
    penalty = functools.partial(l1_penalty, penalized_weights(model), l1) if l1 else None
    stepper = _stepper(model, lr=0.01, device=CUDA, channels_last=True, amp_dtype=torch.bfloat16,
                       compile_mode=compile_mode, penalty=penalty)
    torch._dynamo.reset()
    try:
        stepper.run(batches[:4])  # compiling, warming up and recording the graphs may wait; training must not
        torch.cuda.synchronize()
        totals = stepper.run(_without_host_syncs(batches[4:]))  # replays, and an eager smaller batch between
    finally:
        torch._dynamo.reset()
    assert totals.seen == sum(sizes[4:]) and math.isfinite(totals.loss_sum)


@pytest.mark.gpu
def test_an_epoch_of_the_resident_loader_on_cuda_never_makes_the_host_wait():
    g = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (60, 3, 32, 32), dtype=torch.uint8, generator=g).numpy()
    labels = torch.randint(0, 10, (60,), generator=g).numpy()
    data = ResidentDataset(images, labels, CUDA)
    normalize = Normalizer(MEAN, STD, CUDA, channels_last=True)
    stepper = _stepper(_tiny_model().to(CUDA), lr=0.01, device=CUDA, channels_last=True, amp_dtype=torch.bfloat16)
    stepper.run(data.train_batches(8, seed=0, epoch=1, normalize=normalize))
    torch.cuda.synchronize()
    totals = stepper.run(_without_host_syncs(data.train_batches(8, seed=0, epoch=2, normalize=normalize)))
    assert totals.seen == 60
