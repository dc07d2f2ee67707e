"""The torch device of the engine, from a setting such as the node parameter ``device``."""
from __future__ import annotations

import torch


class DeviceError(ValueError):
    """A device name that is invalid or not available on this machine."""


def resolve_device(device) -> torch.device:
    """``'auto'`` (or None) -> ``cuda`` when available else ``cpu``; ``'cpu'``, ``'cuda'``,
    ``'cuda:N'`` or a ``torch.device`` as given. Raises :class:`DeviceError` for an invalid name or
    CUDA requested where it is not available."""
    if device is None or (isinstance(device, str) and device.strip().lower() == 'auto'):
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise DeviceError(f'invalid device {device!r}: {e}') from e
    if dev.type == 'cuda' and not torch.cuda.is_available():
        raise DeviceError(f'device {device!r} requested but CUDA is not available')
    return dev
