"""Commands beside the pipeline: the sweep over Ray, offline plots pages."""
