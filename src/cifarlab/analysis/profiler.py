"""Parameters and multiply-accumulates (MACs) of a model, per layer and in total, from its modules.

MACs count the multiplications of convolutions (output values x input channels per group x kernel
area) and of linear layers (output values x input features), per image. Not counted: biases, norms,
activations, pooling, the residual additions and option A's zero padding, which are a few additions
or comparisons per value (under 1% of a ResNet's MACs) and which libraries count inconsistently.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn

Shape = tuple[int, ...]


@dataclass(frozen=True)
class LayerProfile:
    name: str  # the module's path in the model, e.g. "stages.0.0.conv1"
    kind: str  # its class name
    input_shape: Shape  # per image, without the batch dimension
    output_shape: Shape
    weight_shape: Shape | None
    parameters: int  # the module's own parameters (weight, bias, a norm's affine and gates)
    macs: int


@dataclass(frozen=True)
class ModelProfile:
    layers: list[LayerProfile]
    parameters: int
    macs: int

    def table(self) -> pd.DataFrame:
        """One row per layer that was called, in call order."""
        return pd.DataFrame([{"layer": layer.name, "kind": layer.kind, "input": _shape(layer.input_shape),
                              "output": _shape(layer.output_shape), "weight": _shape(layer.weight_shape),
                              "parameters": layer.parameters, "MACs": layer.macs} for layer in self.layers])


def _shape(shape: Shape | None) -> str:
    return "-" if shape is None else " x ".join(map(str, shape))


def layer_macs(module: nn.Module, output: torch.Tensor) -> int:
    """Multiply-accumulates of one call of `module` that produced `output` for one image."""
    if isinstance(module, nn.Conv2d):
        kernel_area = module.kernel_size[0] * module.kernel_size[1]
        return output.numel() * (module.in_channels // module.groups) * kernel_area
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    return 0


def profile_model(model: nn.Module, image_shape: Shape = (3, 32, 32)) -> ModelProfile:
    """Run one zero image through `model` in eval mode and record every leaf module it calls.

    Parameters are counted over the whole model, so those of a module that is never called still count.
    """
    leaves = {module: name for name, module in model.named_modules() if not any(module.children())}
    layers: list[LayerProfile] = []

    def record(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        weight = getattr(module, "weight", None)
        layers.append(LayerProfile(
            name=leaves[module], kind=type(module).__name__,
            input_shape=tuple(inputs[0].shape[1:]), output_shape=tuple(output.shape[1:]),
            weight_shape=tuple(weight.shape) if isinstance(weight, torch.Tensor) else None,
            parameters=sum(p.numel() for p in module.parameters(recurse=False)),
            macs=layer_macs(module, output)))

    hooks = [module.register_forward_hook(record) for module in leaves]
    was_training = model.training
    try:
        model.eval()
        parameter = next(model.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
        with torch.no_grad():
            model(torch.zeros(1, *image_shape, device=device))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return ModelProfile(layers=layers, parameters=sum(p.numel() for p in model.parameters()),
                        macs=sum(layer.macs for layer in layers))
