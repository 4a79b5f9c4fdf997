"""Building blocks every network uses: the norms, the activations, the classifier contract."""
