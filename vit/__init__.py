"""Reference reproduction pipeline for "An Image is Worth 16x16 Words" (Dosovitskiy et al., ICLR 2021).

Each stage is a module run as `python -m vit.<stage> --key=value ...`; importing `vit` has no side effects.
"""
__version__ = "0.1.0"
