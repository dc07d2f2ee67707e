"""The map and its engine, split by job (see ``docs/ARCHITECTURE.md``):

``config`` (settings, the one source of defaults) · ``state`` (the map and read-only snapshots) ·
``plausibility`` (frames the map must not take) · ``extraction`` (feature cloud) · ``views``
(features seen from a camera, masks) · ``prototypes`` · ``map_file`` (file schema, validation) ·
``mapper`` (the facade: queue, worker thread, lock, delegation).
"""
from n3f_ros.core.mapping.config import MapperConfig
from n3f_ros.core.mapping.mapper import Mapper
from n3f_ros.core.mapping.plausibility import FrameRejected

__all__ = ['FrameRejected', 'Mapper', 'MapperConfig']
