"""Normalization layers for NCHW tensors written from scratch (`nn.norm_registry` names them).

Every layer is one `_Normalize`: per-(sample, channel) moments over (H, W) in one centred pass,
pooled into batch, layer or group statistics on small (N, C)-sized tensors, then normalization and
affine applied together as `x * scale + shift`. Its backward is derived by hand for all of them at
once, so the work on the full tensor is the same few passes for every norm and the small-tensor
work is a handful of ops, not an autograd graph. None calls torch's functional norms: the study
owns the arithmetic, and "torch_bn" in the registry is the built-in twin that checks it. BIN's gates
are clamped after each optimizer step by the helpers at the end, as the layer's own rule.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from cifarlab.errors import CifarlabError

Pool = Callable[[torch.Tensor], torch.Tensor]
"""The mean of an (N, C, 1, 1) tensor over each normalization group's members, broadcastable back to
(N, C, 1, 1): over samples for BN, over channels for LN, over a group's channels for GN, none for IN.
A pool may return its input or a broadcast view of a smaller tensor (stride 0: GroupNorm with one
group), so nothing writes into a pool's result in place."""


class Statistics(NamedTuple):
    """The mean and 1/std that x is normalized with, each broadcastable to (N, C, 1, 1), and the `pool`
    that made them from x's moments (None for running statistics, which do not depend on x)."""

    mean: torch.Tensor
    rstd: torch.Tensor
    pool: Pool | None


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t


class _Normalize(torch.autograd.Function):
    """y = sum_s coef_s * (x - mean_s) * rstd_s + bias over the norm's statistics s (one; two for BIN),
    with coef_s = weight * gate_s: gate 1, or rho and 1 - rho for BIN.

    On the full tensor, forward makes one reduction for the moments and one multiply-add; backward
    two reductions and one multiply-add. For a group S of m = |S| values normalized together and
    g = dy * coef, the input gradient is the textbook rstd * (g - mean_S(g) - xhat * mean_S(g * xhat));
    with the per-(n, c) sums of dy and dy * x, both group means are pools of (N, C)-sized tensors, so dx
    is dy * scale - x * slope - offset with slope and offset per (n, c). Differentiating the (N, C)-sized
    algebra by hand rather than with autograd halves the per-call cost, which dominates at batch size 8.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, norm: _AffineNorm, weight: torch.Tensor, bias: torch.Tensor,
                rho: torch.Tensor | None) -> torch.Tensor:
        mean = x.mean(dim=(2, 3), keepdim=True)
        # Centring before squaring avoids the cancellation in E[x^2] - E[x]^2. The centred copy is
        # then reused as the output buffer: on CPU a fresh allocation costs about a pass over x.
        out = x - mean
        var = out.square_().mean(dim=(2, 3), keepdim=True)
        sources = norm.statistics(mean, var, x.shape[2] * x.shape[3])
        coefs = _coefficients(weight, rho)
        # At batch size 8 these (N, C)-sized ops cost as much as the passes over x, so they are few.
        scales = [coef * s.rstd for coef, s in zip(coefs, sources)]
        scale = scales[0] if len(scales) == 1 else torch.add(*scales)
        shift = bias.view(1, -1, 1, 1)
        for source_scale, s in zip(scales, sources):
            shift = torch.addcmul(shift, s.mean, source_scale, value=-1)
        _affine(x, scale, shift, out=out)
        ctx.save_for_backward(x, weight, rho)
        ctx.sources, ctx.coefs, ctx.scale = sources, coefs, scale
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, dy: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight, rho = ctx.saved_tensors
        dx = dy * x  # also the buffer for the input gradient below
        sum_dyx = dx.sum(dim=(2, 3), keepdim=True)
        sum_dy = dy.sum(dim=(2, 3), keepdim=True)
        values = x.shape[2] * x.shape[3]  # per (n, c); a group has values * (its members)
        # dx = dy * scale - x * slope - offset, each source adding its part of slope and offset.
        slope = offset = None
        dcoefs = []
        for coef, s in zip(ctx.coefs, ctx.sources):
            dy_centred = torch.addcmul(sum_dyx, s.mean, sum_dy, value=-1)  # sum of dy * (x - mean_s)
            dcoefs.append((s.rstd * dy_centred).sum(0).view(-1))  # sum of dy * xhat_s per channel
            if s.pool is None:  # running statistics: x reaches y only through dy * scale
                continue
            coef = coef / values
            mean_g = s.pool(coef * sum_dy)  # mean_S(g), per (n, c)
            # rstd * xhat * mean_S(g * xhat) = (x - mean_s) * source_slope
            source_slope = s.pool(coef * dy_centred) * s.rstd.pow(3)
            source_offset = torch.addcmul(s.rstd * mean_g, s.mean, source_slope, value=-1)
            slope = source_slope if slope is None else slope + source_slope
            offset = source_offset if offset is None else offset + source_offset
        dbias = sum_dy.sum(dim=(0, 2, 3))
        if rho is None:
            dweight, drho = dcoefs[0], None
        else:
            dbatch, dinstance = dcoefs
            dweight, drho = torch.lerp(dinstance, dbatch, rho), weight * (dbatch - dinstance)
        if not ctx.needs_input_grad[0]:
            return None, None, dweight, dbias, drho
        _affine(x, slope.neg(), offset.neg(), out=dx).addcmul_(dy, ctx.scale)
        return dx, None, dweight, dbias, drho


def _affine(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, *, out: torch.Tensor | None = None
            ) -> torch.Tensor:
    """x * scale + shift (into `out` if given), scale and shift per (n, c), in whichever form is one fast
    pass for x's layout.

    On CPU, addcmul with two broadcast operands is about 1.6x faster than mul + add_ for channels_last
    but misses the vectorized loop for NCHW, where it is about 3x slower.
    """
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.addcmul(shift, x, scale, out=out)
    return torch.mul(x, scale, out=out).add_(shift)


def _coefficients(weight: torch.Tensor, rho: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    weight = weight.view(1, -1, 1, 1)
    if rho is None:
        return (weight,)
    rho = rho.view(1, -1, 1, 1)
    return weight * rho, weight * (1 - rho)


def _normalize(x: torch.Tensor, norm: _AffineNorm, rho: torch.Tensor | None = None) -> torch.Tensor:
    """`norm`'s normalization of x, in x's dtype; see `_Normalize`.

    Half-precision activations (bf16 autocast) are normalized in float32, because their statistics
    would lose too many bits and autocast does not reach inside a custom autograd Function, then
    handed on in their own dtype, as torch's BatchNorm does: the ReLU, the residual add and the next
    convolution then move half the bytes and need no cast.
    """
    return _Normalize.apply(_at_least_float32(x), norm, norm.weight, norm.bias, rho).to(x.dtype)


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """x upcast to float32 if it is half precision; float32 and float64 as they are."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _pool_moments(mean: torch.Tensor, var: torch.Tensor, pool: Pool) -> tuple[torch.Tensor, torch.Tensor]:
    """Means and biased variances of whole groups from those of their equal-sized members.

    Law of total variance: the pooled variance is the mean within-member variance plus the variance
    of the member means. It needs no other pass over x and no reshaping (copying) of a channels_last x.
    """
    pooled_mean = pool(mean)
    return pooled_mean, pool(var + (mean - pooled_mean).square())


def _over_samples(t: torch.Tensor) -> torch.Tensor:
    return t.mean(0, keepdim=True)


def _over_channels(t: torch.Tensor) -> torch.Tensor:
    return t.mean(1, keepdim=True)


class _AffineNorm(nn.Module):
    """A norm with a per-channel affine weight (ones) and bias (zeros), shape (C,).

    Subclasses say which statistics x is normalized with (`statistics`); `_Normalize` does the rest.
    """

    def __init__(self, num_channels: int, *, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_channels = num_channels
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def extra_repr(self) -> str:
        return f"{self.num_channels}, eps={self.eps}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _normalize(x, self)

    def statistics(self, mean: torch.Tensor, var: torch.Tensor, count: int) -> tuple[Statistics, ...]:
        """What x is normalized with, from its per-(n, c) means and biased variances of `count` values
        each. Runs inside `_Normalize.forward`, without autograd, so it may update buffers."""
        raise NotImplementedError

    def _pooled(self, mean: torch.Tensor, var: torch.Tensor, pool: Pool) -> Statistics:
        mean, var = _pool_moments(mean, var, pool)
        return Statistics(mean, torch.rsqrt(var + self.eps), pool)

    def _per_instance(self, mean: torch.Tensor, var: torch.Tensor) -> Statistics:
        """The per-(n, c) moments themselves: nothing to pool."""
        return Statistics(mean, torch.rsqrt(var + self.eps), _identity)


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
    def _check_batch(x: torch.Tensor) -> None:
        """Checked like torch does: one value per channel has no batch variance."""
        n = x.numel() // x.shape[1]
        if n <= 1:
            raise ValueError(f"expected more than 1 value per channel when training, got {n}")

    def _batch_statistics(self, mean: torch.Tensor, var: torch.Tensor, count: int) -> Statistics:
        """Per-channel statistics over (N, H, W), which also move the running statistics."""
        n = mean.shape[0] * count
        mean, var = _pool_moments(mean, var, _over_samples)  # (1, C, 1, 1)
        # No torch.no_grad() needed: `statistics` runs inside the autograd Function's forward.
        self.running_mean.lerp_(mean.view(-1), self.momentum)
        # torch keeps the unbiased variance for eval, though it normalizes with the biased one.
        self.running_var.lerp_(var.view(-1) * (n / (n - 1)), self.momentum)
        self.num_batches_tracked.add_(1)
        return Statistics(mean, torch.rsqrt(var + self.eps), _over_samples)

    def _running_statistics(self) -> Statistics:
        return Statistics(self.running_mean.view(1, -1, 1, 1),
                          torch.rsqrt(self.running_var.view(1, -1, 1, 1) + self.eps), None)


class BatchNorm2d(_RunningStatsNorm):
    """Batch normalization (Ioffe & Szegedy 2015): per-channel statistics over (N, H, W).

    Training normalizes with the batch statistics and updates the running ones; eval uses the
    running ones.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            # Eval is a fixed per-channel affine map, so plain autograd ops will do, in float32 as in
            # training: a bf16 x with float32 scale and shift would take a slow mixed-dtype path.
            running = self._running_statistics()
            scale = self.weight.view(1, -1, 1, 1) * running.rstd
            shift = torch.addcmul(self.bias.view(1, -1, 1, 1), running.mean, scale, value=-1)
            return _affine(_at_least_float32(x), scale, shift).to(x.dtype)
        self._check_batch(x)
        return _normalize(x, self)

    def statistics(self, mean, var, count):
        return (self._batch_statistics(mean, var, count),)


class InstanceNorm2d(_AffineNorm):
    """Instance normalization (Ulyanov et al. 2016): statistics over (H, W) per sample and channel.

    Same in train and eval; no running statistics, like torch's default track_running_stats=False.
    """

    def statistics(self, mean, var, count):
        return (self._per_instance(mean, var),)


class BatchInstanceNorm2d(_RunningStatsNorm):
    """Batch-instance normalization (Nam & Kim 2018): BN and IN mixed per channel by a learned gate.

    y = rho * x_bn + (1 - rho) * x_in, then one shared affine. The training loop finds the gates with
    `gate_parameters`, trains them in their own optimizer group (a multiple of the lr, no weight decay)
    and clips them to [0, 1] after every step (`clip_gates_`), as in the authors' code.
    """

    def __init__(self, num_channels: int, *, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__(num_channels, eps=eps, momentum=momentum)
        self.rho = nn.Parameter(torch.ones(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self._check_batch(x)
        return _normalize(x, self, self.rho)

    def statistics(self, mean, var, count):
        batch = self._batch_statistics(mean, var, count) if self.training else self._running_statistics()
        return batch, self._per_instance(mean, var)  # gated by rho, 1 - rho


class LayerNorm2d(_AffineNorm):
    """Layer normalization (Ba et al. 2016) over (C, H, W) per sample, with a per-channel affine.

    This is torch's GroupNorm(1, C), not nn.LayerNorm over the last dimension.
    """

    def statistics(self, mean, var, count):
        return (self._pooled(mean, var, _over_channels),)  # (N, 1, 1, 1)


class GroupNorm2d(_AffineNorm):
    """Group normalization (Wu & He 2018): per sample, over each group of C/G channels and H, W."""

    takes_groups = True  # the registry binds the model's `groups`, which must divide every width it normalises

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

    def statistics(self, mean, var, count):
        return (self._pooled(mean, var, self._over_groups),)

    def _over_groups(self, t: torch.Tensor) -> torch.Tensor:
        """Each group's mean, repeated for its C/G channels: (N, C, 1, 1) -> (N, G, C/G) -> (N, C, 1, 1)."""
        n, c = t.shape[:2]
        grouped = t.reshape(n, self.groups, c // self.groups)
        return grouped.mean(2, keepdim=True).expand_as(grouped).reshape(n, c, 1, 1)


class NoNorm(nn.Module):
    """The identity, for the run without normalization; takes and ignores the norm arguments."""

    def __init__(self, num_channels: int, *, eps: float = 1e-5) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


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
