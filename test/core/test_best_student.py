"""``best_student.BestStudent``: which student copy answers (no ROS, no field needed)."""
import math

from n3f_ros.core.mapping.best_student import BestStudent


def test_the_kept_copy_answers_until_the_live_field_is_as_good():
    b = BestStudent()
    live = object()
    assert b.served(live, version=3) is live                        # nothing kept yet: the live field
    a = object()
    assert b.update(a, live_error=0.30, kept_error=math.nan, steps=100, version=3)
    assert b.served(live, 3) is a and b.kept.steps == 100
    worse = object()
    assert not b.update(worse, live_error=0.35, kept_error=0.31, steps=200, version=3)   # live over-fits
    assert b.served(live, 3) is a and b.kept.error == 0.31 and b.kept_over_live == 1
    tie = object()
    assert b.update(tie, live_error=0.31, kept_error=0.31, steps=300, version=3)          # as good: newer
    assert b.served(live, 3) is tie
    st = b.stats(3, live_steps=400)
    assert st['student_steps'] == 300 and st['student_copies'] == 2 and st['heldout_error_student_live'] == 0.31


def test_a_new_keyframe_makes_the_copy_stale_and_nan_changes_nothing():
    b = BestStudent()
    live, a = object(), object()
    b.update(a, 0.2, math.nan, 100, version=3)
    assert b.served(live, 4) is live and b.current(4) is None      # map changed: the copy never saw it
    assert b.stats(4, live_steps=150)['student_steps'] == 150
    assert not b.update(object(), math.nan, math.nan, 200, version=4)
    assert b.served(live, 4) is live
