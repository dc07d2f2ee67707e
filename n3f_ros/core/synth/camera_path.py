"""Smooth seeded camera orbit around the table centre.

The path is a continuous, periodic function of the orbit fraction ``s`` (one full circle per
unit of ``s``), so poses can be sampled at any time (e.g. a pose stream faster than the images).
Distance, elevation and look-at target wobble with low harmonics of the orbit (seeded phases),
which keeps consecutive poses close while giving varied views. World frame: z up, metres.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from n3f_ros.core.camera import look_at


@dataclass(frozen=True)
class OrbitPath:
    """Orbit of an OpenCV camera looking at (a jittered point near) ``center``.

    center:       (3,) world point the camera looks at on average (metres).
    distance:     (mean, amplitude) eye-to-target distance, metres.
    elevation:    (mean, amplitude) angle of the eye above the table plane, radians.
    azimuth0:     azimuth at s = 0, radians; ``direction`` +1 (counter-clockwise) or -1.
    target_jitter: amplitude of the look-at wobble, metres (x, y, z).
    phases:       (6,) seeded phases of the wobbles, radians.
    """

    center: tuple = (0.0, 0.0, 0.04)
    distance: tuple = (0.7, 0.15)
    elevation: tuple = (np.deg2rad(40.0), np.deg2rad(10.0))
    azimuth0: float = 0.0
    direction: int = 1
    target_jitter: tuple = (0.04, 0.04, 0.015)
    phases: tuple = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)

    def __post_init__(self):
        dm, da = self.distance
        if not (dm - abs(da) > 0.05):
            raise ValueError(f'orbit distance {self.distance} gets too close to the target')
        if self.direction not in (1, -1):
            raise ValueError(f'direction must be +1 or -1, got {self.direction}')

    @classmethod
    def random(cls, seed: int, center=(0.0, 0.0, 0.04)) -> OrbitPath:
        """Seeded orbit: distance in about 0.5-0.9 m, elevation about 25-60 degrees."""
        rng = np.random.default_rng([int(seed), 0x0B17])
        return cls(center=tuple(float(c) for c in center),
                   distance=(float(rng.uniform(0.66, 0.74)), float(rng.uniform(0.1, 0.16))),
                   elevation=(float(np.deg2rad(rng.uniform(35.0, 48.0))), float(np.deg2rad(rng.uniform(6, 12)))),
                   azimuth0=float(rng.uniform(0, 2 * np.pi)),
                   direction=int(rng.choice([-1, 1])),
                   phases=tuple(float(p) for p in rng.uniform(0, 2 * np.pi, size=6)))

    def eye_target(self, s: float) -> tuple[np.ndarray, np.ndarray]:
        """Camera centre (3,) and look-at target (3,) at orbit fraction ``s`` (world, metres)."""
        ph = self.phases
        w = 2 * np.pi * float(s)
        jx, jy, jz = self.target_jitter
        target = np.asarray(self.center, dtype=np.float64) + np.array([
            jx * np.sin(2 * w + ph[0]), jy * np.sin(3 * w + ph[1]), jz * np.sin(2 * w + ph[2])])
        dist = self.distance[0] + self.distance[1] * np.sin(2 * w + ph[3])
        elev = self.elevation[0] + self.elevation[1] * np.sin(3 * w + ph[4])
        az = self.azimuth0 + self.direction * w + 0.05 * np.sin(5 * w + ph[5])
        eye = target + dist * np.array([np.cos(elev) * np.cos(az), np.cos(elev) * np.sin(az), np.sin(elev)])
        return eye, target

    def pose(self, s: float) -> np.ndarray:
        """``T_world_cam`` (4, 4) at orbit fraction ``s`` (period 1)."""
        eye, target = self.eye_target(s)
        return look_at(eye, target)
