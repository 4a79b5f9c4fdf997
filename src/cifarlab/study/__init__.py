"""params.yaml resolved into the study: every run's settings checked against the registries (models, norms,
activations, optimizers, schedules, report sections), its settings files written and its training code
hashed. It imports the registries and torch with them, so it sits above them; only check-params, the tools
and the tests import it, and every later stage reads the settings files through `config.records`."""
