"""Depth for RGB-only keyframes, triangulated by multi-view stereo as keyframes arrive.

When a keyframe without measured depth is stored, ``KeyframeStereo`` (1) picks its source
keyframes (``stereo.select_sources``) and triangulates its depth, (2) re-triangulates up to
``max_updates`` older keyframes that now prefer the new one as a source (the first keyframe has no
source when it arrives), and (3) keeps in each touched keyframe's stored depth only the pixels that
at least ``min_consistent`` neighbouring keyframes' stereo depth agrees with (``stereo.consistent_views``).
Pixels left at 0 are learnt by the field from colour, as before.

The work is split so the caller's lock is held only to copy inputs and write results:
``plan`` (under the lock: copies images, cameras, poses), ``run`` (no lock: the sweep),
``apply`` (under the lock: writes depth if the keyframes it used are still there).
Depth is z-depth in metres, poses ``T_world_cam``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from n3f_ros.core.keyframes import KeyframeBuffer
from n3f_ros.core.stereo import (PlaneSweepStereo, StereoConfig, consistent_views, depth_range, grey,
                                 select_sources)


@dataclass
class StereoJob:
    """Inputs copied from the keyframe buffer: everything ``run`` needs, nothing shared."""
    buffer: KeyframeBuffer               # the buffer planned on (reset/load replace it)
    orders: dict                         # slot -> insertion counter of every slot used (stale check)
    targets: list                        # slots to (re-)triangulate
    sources: dict                        # target slot -> source slots
    neighbours: dict                     # slot to filter -> slots checked for consistency
    greys: dict                          # slot -> (H, W) float grey image
    cameras: dict                        # slot -> PinholeCamera
    poses: dict                          # slot -> T_world_cam (4, 4)
    ranges: dict                         # target slot -> (near, far) metres
    raw: dict = field(default_factory=dict)       # slot -> raw stereo depth (H, W), filled by run
    filtered: dict = field(default_factory=dict)  # slot -> consistency-filtered depth, filled by run


class KeyframeStereo:
    def __init__(self, config: StereoConfig | None = None, min_depth: float = 0.1, max_depth: float = 5.0,
                 max_updates: int = 2, min_consistent: int = 1, rel_tol: float = 0.02):
        self.config = config or StereoConfig()
        self.stereo = PlaneSweepStereo(self.config)
        self.min_depth, self.max_depth = min_depth, max_depth
        self.max_updates, self.min_consistent, self.rel_tol = max_updates, min_consistent, rel_tol
        self.clear()

    def clear(self) -> None:
        self._raw: dict[int, tuple[int, tuple, torch.Tensor]] = {}   # slot -> (order, sources, raw depth)

    def _raw_valid(self, kf: KeyframeBuffer, slot: int) -> bool:
        return slot in self._raw and self._raw[slot][0] == kf.order[slot]

    def raw_depth(self, kf: KeyframeBuffer, slot: int) -> torch.Tensor | None:
        """The plane sweep's depth (H, W) of ``slot`` before the consistency check, or None."""
        return self._raw[slot][2] if self._raw_valid(kf, slot) else None

    def _depth_hint(self, kf: KeyframeBuffer) -> float:
        """Typical scene depth (metres): median of the stereo depth so far, else 1 m."""
        vals = [d[d > 0] for o, _, d in self._raw.values()]
        vals = torch.cat(vals) if vals else torch.zeros(0)
        return float(vals.median()) if len(vals) > 100 else 1.0

    def plan(self, kf: KeyframeBuffer, new_slot: int, bounds) -> StereoJob | None:
        """Work for a keyframe just stored in ``new_slot`` (call under the buffer's lock)."""
        if len(kf) < 2:
            return None
        cfg = self.config
        hint = self._depth_hint(kf)
        # every keyframe's candidates, best first: the first max_sources are its stereo sources,
        # all of them its neighbours in the consistency check
        pool = StereoConfig(**{**cfg.__dict__, 'max_sources': 2 * cfg.max_sources})
        ranked = [select_sources(kf.poses, s, hint, pool) for s in range(len(kf))]
        targets, sources = [], {}
        if ranked[new_slot]:
            targets.append(new_slot)
            sources[new_slot] = ranked[new_slot][:cfg.max_sources]
        # older keyframes that now prefer the new one (nearest first), up to max_updates
        older = []
        for s in range(len(kf)):
            if s == new_slot:
                continue
            cand = ranked[s][:cfg.max_sources]
            have = self._raw[s][1] if self._raw_valid(kf, s) else ()
            if new_slot in cand and tuple(cand) != tuple(have):
                dist = float(np.linalg.norm(kf.poses[s][:3, 3] - kf.poses[new_slot][:3, 3]))
                older.append((dist, s, cand))
        for _, s, cand in sorted(older)[:self.max_updates]:
            targets.append(s)
            sources[s] = cand
        if not targets:
            return None
        # consistency: each touched keyframe against its neighbours
        touched = set(targets) | {s for s in range(len(kf)) if self._raw_valid(kf, s) and new_slot in ranked[s]}
        neighbours = {s: [o for o in ranked[s] if o in targets or self._raw_valid(kf, o)] for s in touched}
        used = set(targets) | {o for v in sources.values() for o in v} | touched | \
            {o for v in neighbours.values() for o in v}
        ranges = {}
        for t in targets:
            try:
                ranges[t] = depth_range(kf.cameras[t], kf.poses[t], bounds, self.min_depth, self.max_depth)
            except ValueError:
                continue
        targets = [t for t in targets if t in ranges]
        return StereoJob(
            buffer=kf, orders={s: kf.order[s] for s in used}, targets=targets, sources=sources,
            neighbours=neighbours,
            greys={s: grey(kf.rgb[s]) for s in used}, cameras={s: kf.cameras[s] for s in used},
            poses={s: kf.poses[s].copy() for s in used}, ranges=ranges,
            raw={s: self._raw[s][2] for s in used if s not in targets and self._raw_valid(kf, s)})

    def run(self, job: StereoJob) -> StereoJob:
        """Triangulate the targets, then filter every touched keyframe (no lock needed)."""
        for t in job.targets:
            src = job.sources[t]
            near, far = job.ranges[t]
            depth, _ = self.stereo.compute(job.greys[t], job.cameras[t], job.poses[t],
                                           [job.greys[s] for s in src], [job.cameras[s] for s in src],
                                           [job.poses[s] for s in src], near, far)
            job.raw[t] = depth
        for s, nb in job.neighbours.items():
            if s not in job.raw:
                continue
            nb = [o for o in nb if o in job.raw]
            if not nb:
                continue
            n = consistent_views(job.raw[s], job.cameras[s], job.poses[s], [job.raw[o] for o in nb],
                                 [job.cameras[o] for o in nb], [job.poses[o] for o in nb], self.rel_tol)
            need = min(self.min_consistent, len(nb))
            job.filtered[s] = torch.where(n >= need, job.raw[s], torch.zeros_like(job.raw[s]))
        return job

    def apply(self, kf: KeyframeBuffer, job: StereoJob) -> list[int]:
        """Store the results (call under the buffer's lock). Returns the slots whose depth was
        written, ascending; nothing is written for a keyframe replaced (or a buffer reset/reloaded)
        since ``plan``."""
        if kf is not job.buffer:
            return []
        alive = {s for s, o in job.orders.items() if s < len(kf) and kf.order[s] == o}
        for t in job.targets:
            if t in alive:
                self._raw[t] = (kf.order[t], tuple(job.sources[t]), job.raw[t])
        written = []
        for s, d in sorted(job.filtered.items()):
            if s in alive:
                kf.depth[s] = d.to(kf.depth.device)
                written.append(s)
        return written
