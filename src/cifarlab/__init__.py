"""cifarlab: normalization, batch-size and architecture studies on CIFAR-10 as one DVC pipeline."""
