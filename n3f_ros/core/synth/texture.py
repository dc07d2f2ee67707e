"""Procedural 3D textures and Lambertian shading for the synthetic tabletop scenes.

Colour is a function of the 3D hit point (in the object's own frame: world point minus the
object's centre, metres), so it is consistent across views and varies within each object:
colour alone is not an instance label. A texture mixes a ``primary`` and a ``secondary``
colour with a pattern (stripes, checker, blotchy noise) and modulates the result with a fine
multiplicative noise. Colours are RGB floats in [0, 1].
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

PATTERNS = ('stripes', 'checker', 'noise')

#: fixed light: direction towards the light in the world frame (z up), ambient and diffuse weights
LIGHT_DIR = np.array([0.35, -0.45, 1.0]) / np.linalg.norm([0.35, -0.45, 1.0])
AMBIENT = 0.35
DIFFUSE = 0.65
SHADOW = 0.45          # diffuse term kept in shadow (soft-ish shadows)
BACKGROUND = np.array([0.16, 0.17, 0.20])


@dataclass(frozen=True)
class Texture:
    """A procedural texture.

    pattern:   one of PATTERNS.
    primary, secondary: (3,) RGB in [0, 1].
    frequency: pattern frequency in cycles per metre.
    axis:      (3,) unit stripe direction (stripes only).
    waves:     (K, 4) rows (wx, wy, wz, phase) of the smooth noise sum, w in rad/m.
    grain:     amplitude of the fine multiplicative noise (0 = none).
    """

    pattern: str
    primary: tuple
    secondary: tuple
    frequency: float
    axis: tuple
    waves: np.ndarray
    grain: float = 0.08

    def __post_init__(self):
        if self.pattern not in PATTERNS:
            raise ValueError(f'unknown texture pattern {self.pattern!r}, expected one of {PATTERNS}')
        if not self.frequency > 0:
            raise ValueError(f'texture frequency must be positive, got {self.frequency}')

    @classmethod
    def random(cls, rng: np.random.Generator, primary, secondary, pattern: str | None = None,
               frequency: tuple[float, float] = (15.0, 45.0), grain: float = 0.08) -> Texture:
        """A texture with random pattern parameters (seeded by ``rng``)."""
        pattern = pattern or PATTERNS[int(rng.integers(len(PATTERNS)))]
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        k = 4
        dirs = rng.normal(size=(k, 3))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        freqs = rng.uniform(20.0, 90.0, size=(k, 1))           # rad/m
        waves = np.concatenate([dirs * freqs, rng.uniform(0, 2 * np.pi, size=(k, 1))], axis=1)
        return cls(pattern, tuple(float(c) for c in primary), tuple(float(c) for c in secondary),
                   float(rng.uniform(*frequency)), tuple(axis.tolist()), waves, grain)

    def albedo(self, p: np.ndarray) -> np.ndarray:
        """Albedo (N, 3) float32 in [0, 1] at points ``p`` (N, 3) in the texture's frame (metres)."""
        p = np.asarray(p, dtype=np.float32).reshape(-1, 3)
        smooth = _wave_sum(p, self.waves)                           # (N,) in [-1, 1]
        if self.pattern == 'stripes':
            mix = (np.sin(np.float32(2 * np.pi * self.frequency) * (p @ np.asarray(self.axis, np.float32))) > 0)
            mix = mix.astype(np.float32)
        elif self.pattern == 'checker':
            cells = np.floor(p * self.frequency).astype(np.int64).sum(axis=1)
            mix = (cells & 1).astype(np.float32)
        else:  # 'noise': blotches with soft edges
            mix = np.clip(0.5 + 2.0 * smooth, 0.0, 1.0)
        a, b = np.asarray(self.primary, np.float32), np.asarray(self.secondary, np.float32)
        col = a[None] * (1.0 - mix[:, None]) + b[None] * mix[:, None]            # (N, 3)
        if self.grain > 0:
            fine = _wave_sum(p * 7.3, self.waves[::-1])                            # (N,) in [-1, 1]
            col = col * (1.0 + self.grain * fine[:, None] + 0.5 * self.grain * smooth[:, None])
        return np.clip(col, 0.0, 1.0).astype(np.float32)


def _wave_sum(p: np.ndarray, waves: np.ndarray) -> np.ndarray:
    """Mean of sin(w . p + phase) over the rows of ``waves`` (K, 4): (N,) in [-1, 1]."""
    w = np.asarray(waves, dtype=np.float32)
    return np.sin(p @ w[:, :3].T + w[None, :, 3]).mean(axis=1)


def shade(albedo: np.ndarray, normals: np.ndarray, lit: np.ndarray | None = None) -> np.ndarray:
    """Lambertian shading with the fixed light: (N, 3) albedo, (N, 3) unit normals -> (N, 3) in [0, 1].

    Normals must face the viewer (callers flip back-facing ones). ``lit`` (N,) bool marks points
    that see the light (None = all); points in shadow keep only a fraction of the diffuse term.
    """
    ndotl = np.clip(normals @ LIGHT_DIR.astype(np.float32), 0.0, 1.0)   # (N,)
    if lit is not None:
        ndotl = np.where(lit, ndotl, SHADOW * ndotl)
    return np.clip(albedo * (AMBIENT + DIFFUSE * ndotl)[:, None], 0.0, 1.0).astype(np.float32)


def palette(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` random saturated RGB colours (n, 3) in [0, 1] with well spread hues."""
    hues = (rng.uniform() + np.arange(n) / n + rng.uniform(-0.05, 0.05, size=n)) % 1.0
    sats = rng.uniform(0.45, 0.9, size=n)
    vals = rng.uniform(0.55, 0.95, size=n)
    return np.array([colorsys.hsv_to_rgb(h, s, v) for h, s, v in zip(hues, sats, vals)])


def jitter_colour(rng: np.random.Generator, colour, amount: float = 0.04) -> np.ndarray:
    """``colour`` (3,) plus uniform noise of +-``amount`` per channel, clipped to [0, 1]."""
    return np.clip(np.asarray(colour) + rng.uniform(-amount, amount, size=3), 0.0, 1.0)
