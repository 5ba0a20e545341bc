"""Ablations: each experiment of the reference papers as a config in configs/ablations/ plus a short module."""
