"""CIFAR-10 on disk and in memory: fetch, the archive, the split, the batches."""

NUM_CLASSES = 10  # CIFAR-10
