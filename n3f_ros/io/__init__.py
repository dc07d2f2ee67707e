"""Message-level code without rclpy: decode and validate incoming messages (SPEC §4), pair them
into core Frames, encode outgoing messages and query answers, diagnostics figures.

Used by the node (``n3f_ros/ros/``) and by the offline bag tools (``n3f_ros/bag/``), so a live
stream and a recording are judged and paired by the same rules. Message classes are imported
only where messages are built (``encode``, ``answers``); decoding is duck-typed.
"""
