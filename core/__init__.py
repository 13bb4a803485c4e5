"""The modules every script shares: configuration, the run lifecycle, checkpoints, metrics, reports."""
