"""Normalization layers for NCHW tensors written from scratch, and the registry that names them.

Every layer takes per-(sample, channel) moments over (H, W) in one reduction, pools them into
batch, layer or group moments on small (N, C)-sized tensors, and applies normalization and affine
together as `x * scale + shift`, so the work on the full tensor is the same few passes for every
norm (`_FoldedNorm`). None calls torch's functional norms: the study owns the arithmetic, and
"torch_bn" in the registry is the built-in twin that checks it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from cifarlab.errors import CifarlabError


Fold = Callable[..., tuple[torch.Tensor, torch.Tensor]]


class _FoldedNorm(torch.autograd.Function):
    """y = x * scale + shift, with (scale, shift) = fold(mean, var, *params) from x's per-(sample,
    channel) mean and biased variance over (H, W), each (N, C, 1, 1).

    All the work on the full tensor, shared by every norm: one reduction for the moments and one
    multiply-add forward; two reductions and one multiply-add for dx backward. A norm only supplies
    `fold`, arithmetic on N*C-element tensors, which backward differentiates with autograd. Written
    by hand because on CPU `torch.var_mean` runs ~20x slower than mean-then-centred-square, and
    autograd through the elementwise ops takes several more passes over x.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, fold: Fold, *params: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(2, 3), keepdim=True)
        # Centring before squaring avoids the cancellation in E[x^2] - E[x]^2. The centred copy is
        # then reused as the output buffer: on CPU a fresh allocation costs about a pass over x.
        y = x - mean
        var = y.square_().mean(dim=(2, 3), keepdim=True)
        leaves = [mean, var, *(p.detach() for p in params)]
        for leaf in leaves:
            leaf.requires_grad_()
        with torch.enable_grad():
            scale, shift = fold(*leaves)  # (1|N, C, 1, 1) each
        # mul + add_ rather than addcmul: on CPU addcmul with two broadcast operands misses the
        # vectorized loop and costs about twice as much for NCHW.
        torch.mul(x, scale.detach(), out=y).add_(shift.detach())
        ctx.save_for_backward(x)
        ctx.small_graph = leaves, scale, shift
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (x,) = ctx.saved_tensors
        leaves, scale, shift = ctx.small_graph
        dx = dy * x  # also the buffer for the input gradient below
        dscale = dx.sum(dim=(2, 3), keepdim=True).sum_to_size(scale.shape)
        dshift = dy.sum(dim=(2, 3), keepdim=True).sum_to_size(shift.shape)
        # retain_graph so that an outer backward(retain_graph=True) can come through here again.
        dmean, dvar, *dparams = torch.autograd.grad(
            (scale, shift), leaves, (dscale, dshift), retain_graph=True, materialize_grads=True
        )
        if not ctx.needs_input_grad[0]:
            return (None, None, *dparams)
        # x reaches y directly (dy * scale) and through mean (d/dx = 1/HW) and var
        # (d/dx = 2 (x - mean)/HW); the latter two are x * k1 + k0 per (n, c).
        hw = x.shape[2] * x.shape[3]
        k1 = dvar * (2 / hw)
        k0 = dmean / hw - k1 * leaves[0].detach()
        torch.mul(x, k1, out=dx).add_(k0).addcmul_(dy, scale.detach())
        return (dx, None, *dparams)


def _folded_norm(x: torch.Tensor, fold: Fold, *params: torch.Tensor) -> torch.Tensor:
    """x * scale + shift with (scale, shift) = fold(mean, var, *params); see `_FoldedNorm`.

    Half-precision activations (bf16 autocast) are normalized in float32: their statistics would lose
    too many bits, and autocast does not reach inside a custom autograd Function.
    """
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    return _FoldedNorm.apply(x, fold, *params)


def _pool_moments(
    mean: torch.Tensor, var: torch.Tensor, dim: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Combine equal-sized groups' means and biased variances along `dim` (keepdim).

    Law of total variance: the pooled variance is the mean within-group variance plus the variance
    of the group means. It turns the per-(n, c) moments into batch, layer or group moments without
    another pass over x, and without reshaping (copying) a channels_last x.
    """
    pooled_mean = mean.mean(dim, keepdim=True)
    pooled_var = (var + (mean - pooled_mean).square()).mean(dim, keepdim=True)
    return pooled_mean, pooled_var


def _scale_shift(
    mean: torch.Tensor, var: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold weight * (x - mean) / sqrt(var + eps) + bias into x * scale + shift."""
    scale = weight.view(1, -1, 1, 1) * torch.rsqrt(var + eps)
    shift = bias.view(1, -1, 1, 1) - mean * scale
    return scale, shift


class _AffineNorm(nn.Module):
    """A norm with a per-channel affine weight (ones) and bias (zeros), shape (C,)."""

    def __init__(self, num_channels: int, *, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_channels = num_channels
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def extra_repr(self) -> str:
        return f"{self.num_channels}, eps={self.eps}"


class _RunningStatsNorm(_AffineNorm):
    """An affine norm that also keeps batch statistics for eval, under torch's buffer names."""

    def __init__(self, num_channels: int, *, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__(num_channels, eps=eps)
        self.momentum = momentum
        # Same names as nn.BatchNorm2d, so state dicts of the two look alike.
        self.register_buffer("running_mean", torch.zeros(num_channels))
        self.register_buffer("running_var", torch.ones(num_channels))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, momentum={self.momentum}"

    @staticmethod
    def _values_per_channel(x: torch.Tensor) -> int:
        """N * H * W, checked like torch does: one value per channel has no batch variance."""
        n = x.numel() // x.shape[1]
        if n <= 1:
            raise ValueError(f"expected more than 1 value per channel when training, got {n}")
        return n

    def _track(self, mean: torch.Tensor, var: torch.Tensor, n: int) -> None:
        """Fold a batch's (1, C, 1, 1) mean and biased variance of n values into running stats."""
        with torch.no_grad():
            self.running_mean.lerp_(mean.view(-1), self.momentum)
            # torch keeps the unbiased variance for eval, though it normalizes with the biased one.
            self.running_var.lerp_(var.view(-1) * (n / (n - 1)), self.momentum)
            self.num_batches_tracked.add_(1)

    def _running(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the running mean and variance as (1, C, 1, 1)."""
        return self.running_mean.view(1, -1, 1, 1), self.running_var.view(1, -1, 1, 1)


class BatchNorm2d(_RunningStatsNorm):
    """Batch normalization (Ioffe & Szegedy 2015): per-channel statistics over (N, H, W).

    Training normalizes with the batch statistics and updates the running ones; eval uses the
    running ones.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            # No batch statistics needed, so plain autograd ops will do.
            scale, shift = _scale_shift(*self._running(), self.weight, self.bias, self.eps)
            return x.mul(scale).add_(shift)
        n = self._values_per_channel(x)

        def fold(in_mean, in_var, weight, bias):
            mean, var = _pool_moments(in_mean, in_var, dim=0)  # (1, C, 1, 1)
            self._track(mean, var, n)
            return _scale_shift(mean, var, weight, bias, self.eps)

        return _folded_norm(x, fold, self.weight, self.bias)


class InstanceNorm2d(_AffineNorm):
    """Instance normalization (Ulyanov et al. 2016): statistics over (H, W) per sample and channel.

    Same in train and eval; no running statistics, like torch's default track_running_stats=False.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _folded_norm(x, self._fold, self.weight, self.bias)

    def _fold(self, mean, var, weight, bias):
        return _scale_shift(mean, var, weight, bias, self.eps)


class BatchInstanceNorm2d(_RunningStatsNorm):
    """Batch-instance normalization (Nam & Kim 2018): BN and IN mixed per channel by a learned gate.

    y = rho * x_bn + (1 - rho) * x_in, then one shared affine; the training loop clips rho to [0, 1]
    after every step (`clip_gates_`) and keeps it out of weight decay (`no_weight_decay`).
    """

    no_weight_decay = ("rho",)

    def __init__(self, num_channels: int, *, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__(num_channels, eps=eps, momentum=momentum)
        self.rho = nn.Parameter(torch.ones(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self._values_per_channel(x) if self.training else 0

        def fold(in_mean, in_var, weight, bias, rho):
            if self.training:
                bn_mean, bn_var = _pool_moments(in_mean, in_var, dim=0)  # (1, C, 1, 1)
                self._track(bn_mean, bn_var, n)
            else:
                bn_mean, bn_var = self._running()
            # rho * x_bn + (1 - rho) * x_in is itself x * a + c per (n, c), so the gate folds into
            # the scale/shift like the affine does.
            rho = rho.view(1, -1, 1, 1)
            bn_rstd = rho * torch.rsqrt(bn_var + self.eps)  # (1, C, 1, 1)
            in_rstd = (1 - rho) * torch.rsqrt(in_var + self.eps)  # (N, C, 1, 1)
            weight = weight.view(1, -1, 1, 1)
            scale = weight * (bn_rstd + in_rstd)
            shift = bias.view(1, -1, 1, 1) - weight * (bn_rstd * bn_mean + in_rstd * in_mean)
            return scale, shift

        return _folded_norm(x, fold, self.weight, self.bias, self.rho)


class LayerNorm2d(_AffineNorm):
    """Layer normalization (Ba et al. 2016) over (C, H, W) per sample, with a per-channel affine.

    This is torch's GroupNorm(1, C), not nn.LayerNorm over the last dimension.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _folded_norm(x, self._fold, self.weight, self.bias)

    def _fold(self, mean, var, weight, bias):
        mean, var = _pool_moments(mean, var, dim=1)  # (N, 1, 1, 1)
        return _scale_shift(mean, var, weight, bias, self.eps)


class GroupNorm2d(_AffineNorm):
    """Group normalization (Wu & He 2018): per sample, over each group of C/G channels and H, W."""

    def __init__(self, num_channels: int, *, groups: int, eps: float = 1e-5) -> None:
        # Callers validate groups against the params key earlier; this is the last line of defence.
        if groups < 1 or num_channels % groups != 0:
            raise CifarlabError(
                f"GroupNorm: groups={groups} does not divide num_channels={num_channels}"
            )
        super().__init__(num_channels, eps=eps)
        self.groups = groups

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, groups={self.groups}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _folded_norm(x, self._fold, self.weight, self.bias)

    def _fold(self, mean, var, weight, bias):
        n, c = mean.shape[:2]
        g = self.groups
        grouped = (mean.view(n, g, c // g), var.view(n, g, c // g))
        mean, var = _pool_moments(*grouped, dim=2)  # (N, G, 1)
        # Each group's statistics repeated for its C/G channels: (N, G, C/G) -> (N, C, 1, 1).
        mean = mean.expand(n, g, c // g).reshape(n, c, 1, 1)
        var = var.expand(n, g, c // g).reshape(n, c, 1, 1)
        return _scale_shift(mean, var, weight, bias, self.eps)


class NoNorm(nn.Module):
    """The identity, for the run without normalization; takes and ignores the norm arguments."""

    def __init__(self, num_channels: int, *, eps: float = 1e-5) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


NORM_LAYERS: dict[str, type[nn.Module]] = {
    "torch_bn": nn.BatchNorm2d,  # the built-in, sanity twin of "bn"
    "bn": BatchNorm2d,
    "in": InstanceNorm2d,
    "bin": BatchInstanceNorm2d,
    "ln": LayerNorm2d,
    "gn": GroupNorm2d,
    "nn": NoNorm,
}


def get_norm_layer(name: str, *, groups: int | None = None) -> Callable[[int], nn.Module]:
    """The constructor `norm_layer(num_channels)` for a norm name; binds `groups` for "gn"."""
    if name not in NORM_LAYERS:
        raise CifarlabError(f"unknown norm {name!r}; expected one of: {', '.join(NORM_LAYERS)}")
    cls = NORM_LAYERS[name]
    if cls is GroupNorm2d:
        if groups is None:
            raise CifarlabError(f"norm {name!r} needs groups (GroupNorm's number of groups)")
        return functools.partial(GroupNorm2d, groups=groups)
    return cls


def no_weight_decay_names(model: nn.Module) -> set[str]:
    """Full names of the parameters that some submodule lists in its `no_weight_decay` attribute."""
    return {
        f"{module_name}.{param_name}" if module_name else param_name
        for module_name, module in model.named_modules()
        for param_name in getattr(module, "no_weight_decay", ())
    }


def gate_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every BatchInstanceNorm2d gate rho in `model`, for `clip_gates_` after each step."""
    return [m.rho for m in model.modules() if isinstance(m, BatchInstanceNorm2d)]


def clip_gates_(gates: list[torch.Tensor]) -> None:
    """Clamp every gate into [0, 1] in place, as Nam & Kim 2018 do after each update."""
    if not gates:
        return
    with torch.no_grad():
        # Two foreach kernels for all gates; no Python work per gate, so it is cheap every step.
        torch._foreach_clamp_min_(gates, 0.0)
        torch._foreach_clamp_max_(gates, 1.0)
