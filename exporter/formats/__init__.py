"""Artifact formats, one short file each; `registry.py` maps their names to them."""
