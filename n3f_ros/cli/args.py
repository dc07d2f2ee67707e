"""Argument types shared by the command lines (``n3f ...`` and the benchmark peers run as
``python -m n3f_ros.bench.*``): an image size ``WxH`` and a node parameter ``NAME:=VALUE``.
Imports nothing heavy, so ``--help`` stays fast."""
import argparse


def image_size(text: str) -> tuple[int, int]:
    """'640x480' -> (640, 480) pixels; argparse type (ArgumentTypeError on anything else)."""
    try:
        w, h = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'size must look like 640x480, got {text!r}') from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f'size must be positive, got {text!r}')
    return w, h


def image_sizes(text: str) -> list[tuple[int, int]]:
    """'320x240,640x480' -> [(320, 240), (640, 480)]; argparse type."""
    return [image_size(s) for s in text.split(',')]


def node_param(text: str) -> tuple[str, str]:
    """'keyframe_width:=96' -> ('keyframe_width', '96'): a node parameter override; argparse type."""
    name, sep, value = text.partition(':=')
    if not sep or not name:
        raise argparse.ArgumentTypeError(f'expected NAME:=VALUE, got {text!r}')
    return name, value
