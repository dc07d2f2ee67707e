"""The student that answers: the copy of the field with the lowest held-out error since the
keyframes last changed (early stopping, done online).

Training goes on as long as the node runs. Once the robot stops moving, the field keeps fitting
the same keyframes and can over-fit them: on the open3d scene (DINOv2 teacher, RGB-D) its held-out
``1 - cos`` rose from 0.241 at 500 steps to 0.299 at 1500. So the live field is not what answers.
At every held-out measurement (``sources.measure_fields``, every ``holdout_eval_steps`` steps) the
live field and the kept copy are measured on the *same* held-out pixels; the kept copy is replaced
by a copy of the live field when the live one is at least as good. Clouds, feature images, masks,
queries and the saved map read :meth:`BestStudent.served` — the kept copy, or the live field when
there is none yet.

A keyframe insertion or fusion (``MapState.version``) makes the kept copy stale: it never saw the
new keyframe. Then the live field answers again until the next measurement takes a new copy, so
while the robot explores answers follow the live field as before.

The kept copy is never trained or changed in place (it is replaced whole), so readers may hold it
outside the mapper's lock.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class KeptCopy:
    """A field copy (no gradients), the training steps and map version it was taken at, and its
    held-out student error at its last measurement."""

    field: object
    steps: int
    version: int
    error: float


class BestStudent:
    """See the module docstring."""

    def __init__(self):
        self.kept: KeptCopy | None = None
        self.replaced = 0              # copies taken
        self.kept_over_live = 0        # measurements at which the kept copy beat the live field
        self.live_error = float('nan')   # held-out error of the live field at the last measurement

    def current(self, version: int) -> KeptCopy | None:
        """The kept copy if it was taken at map ``version`` (else it is stale: None)."""
        k = self.kept
        return k if k is not None and k.version == version else None

    def served(self, live, version: int):
        """The field that answers at map ``version``: the kept copy, else ``live``."""
        k = self.current(version)
        return k.field if k is not None else live

    def update(self, live_copy, live_error: float, kept_error: float, steps: int, version: int) -> bool:
        """Record one measurement: ``live_copy`` (an independent copy of the live field measured at
        ``steps``) with held-out error ``live_error``, and ``kept_error`` of the current kept copy
        on the same pixels (nan: there is none). Returns True when the kept copy is (now) the live
        one's copy. A nan live error (nothing measurable) changes nothing."""
        self.live_error = float(live_error)
        if live_error != live_error:                       # nan
            return False
        k = self.current(version)
        if k is not None and kept_error == kept_error and kept_error < live_error:
            k.error = kept_error
            self.kept_over_live += 1
            return False
        self.kept = KeptCopy(live_copy, int(steps), int(version), float(live_error))
        self.replaced += 1
        return True

    def stats(self, version: int, live_steps: int) -> dict:
        """Diagnostics: training steps of the answering student (the live field's when no copy is
        kept), how often copies were taken or kept, the live field's last held-out error."""
        k = self.current(version)
        return {'student_steps': k.steps if k is not None else live_steps,
                'student_copies': self.replaced, 'student_kept_over_live': self.kept_over_live,
                'heldout_error_student_live': self.live_error}
