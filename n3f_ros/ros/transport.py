"""DDS transport settings for camera-sized images (issue 14; README "Large images"). No ROS import.

Fast DDS (the default RMW) sends same-host traffic through a shared-memory segment of 512 KB per
participant; a 640x480 rgb8 image is 0.9 MB, a 1280x720 one 2.8 MB, and at 30 Hz most of them
were lost (``n3f bench dds``). The segment belongs to the *writer*: the camera driver (or bag
player) needs a larger one, and so does this node for what it publishes large (``feature_cloud``).
The shipped profile :data:`FASTDDS_PROFILE` (``config/``) gives every process that loads it a
32 MB segment. The launch files hand it to the node and the bag player through
:func:`profile_environment`; other processes (a camera driver) need the same variables.
"""
from __future__ import annotations

import os

#: Fast DDS XML profile in the package's ``config/`` folder
FASTDDS_PROFILE = 'fastdds_large_images.xml'
#: environment variables that name a Fast DDS XML profile: Fast DDS 3.x (Kilted on) reads the first,
#: Fast DDS 2.x (Humble, Jazzy) only the second (Kilted's rmw_fastrtps still reads it, with a
#: deprecation warning per process)
FASTDDS_PROFILE_VARIABLES = ('FASTDDS_DEFAULT_PROFILES_FILE', 'FASTRTPS_DEFAULT_PROFILES_FILE')
#: ROS 2 distributions whose Fast DDS is 2.x (ROS_DISTRO): they get the second variable too
FAST_DDS_2_DISTROS = ('humble', 'iron', 'jazzy')
#: launch argument value: the shipped profile unless the environment already names one
AUTO = 'auto'
#: launch argument values that set no profile at all
NO_PROFILE = ('', 'none')


def profile_variables(environ=None) -> tuple[str, ...]:
    """The variables to set for this distro (``ROS_DISTRO``; unset, as in the pip world of Kilted
    wheels, means Fast DDS 3): the first of :data:`FASTDDS_PROFILE_VARIABLES`, plus the second on
    Fast DDS 2.x distros."""
    environ = os.environ if environ is None else environ
    distro = str(environ.get('ROS_DISTRO', '')).strip().lower()
    return FASTDDS_PROFILE_VARIABLES if distro in FAST_DDS_2_DISTROS else FASTDDS_PROFILE_VARIABLES[:1]


def profile_environment(choice: str, config_dir: str, environ=None) -> dict:
    """Environment for a process given the ``fastdds_profile`` launch argument ``choice``.

    ``auto``: the shipped profile (``config_dir``/:data:`FASTDDS_PROFILE`), or nothing when
    ``environ`` (default ``os.environ``) already names a profile (a site's own DDS configuration
    wins); ``''`` or ``none``: nothing; otherwise the path of a profile file. Returns
    {variable: path} for the :func:`profile_variables` of ``environ``'s distro (empty when nothing
    is set). Raises ``RuntimeError`` when the file does not exist.
    """
    environ = os.environ if environ is None else environ
    choice = str(choice).strip()
    if choice.lower() in NO_PROFILE:
        return {}
    if choice.lower() == AUTO:
        if any(environ.get(v) for v in FASTDDS_PROFILE_VARIABLES):
            return {}
        choice = os.path.join(config_dir, FASTDDS_PROFILE)
    path = os.path.abspath(os.path.expanduser(choice))
    if not os.path.isfile(path):
        raise RuntimeError(f"fastdds_profile '{choice}' is not a file; give a Fast DDS XML profile, "
                           f"'{AUTO}' (the shipped {FASTDDS_PROFILE}) or 'none'. Nothing was started.")
    return dict.fromkeys(profile_variables(environ), path)
