"""Defaults of a live session (``live.LiveSettings``) that the command lines (``n3f demo``,
``n3f bench latency``) show too; imports nothing, so ``--help`` stays fast."""

#: frames streamed, stream rate [Hz] (36 frames at 2 Hz: an 18 s stream), image size (width, height)
FRAMES, FPS, SIZE = 36, 2.0, (320, 240)
#: [s] rounds of queries after the stream ended, at most; [s] between rounds
MAX_WAIT, QUERY_PERIOD = 120.0, 5.0
