"""Data preparation (text corpus -> token files) and the reader used by training."""
