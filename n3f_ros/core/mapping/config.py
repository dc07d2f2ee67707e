"""The engine's settings: the one source of their defaults (see ``core/options.py``).

Every field declared with :func:`option` is also a node parameter of the same name
(``ros/parameters.py`` builds its table from here); the nested configurations are parameters
under a prefix: ``field.*`` (:class:`FieldConfig`), ``render.*`` (:class:`RenderSettings`),
``stereo.*`` (:class:`StereoConfig`), ``upsample.*`` (:class:`UpsampleConfig`: the teacher features'
guided upsampling). Fields without :func:`option` are internal.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from n3f_ros.core.cloud.query import MAX_ANSWER_SHARE, MIN_SIMILARITY_SPREAD
from n3f_ros.core.field.model import FieldConfig
from n3f_ros.core.field.render import RenderSettings
from n3f_ros.core.mapping.sources import CHOICES as SOURCE_CHOICES
from n3f_ros.core.options import OptionInfo, option, options_of
from n3f_ros.core.stereo import StereoConfig
from n3f_ros.core.teacher import DEFAULT_MODEL
from n3f_ros.core.teacher.upsample import UpsampleConfig

#: nested configurations: (MapperConfig field, parameter prefix, dataclass)
NESTED = (('field_config', 'field.', FieldConfig), ('render_config', 'render.', RenderSettings),
          ('stereo_config', 'stereo.', StereoConfig), ('upsample_config', 'upsample.', UpsampleConfig))


@dataclass
class MapperConfig:
    """Engine settings; each documented field is a node parameter of the same name."""

    # --- teacher
    teacher_model: str = option(DEFAULT_MODEL, "'auto' (official DINO ViT-S/16, else DINOv2 ViT-S/14, from the HF "
                                'cache, else the DINOv2 ViT-S/14 installed by setup: `n3f weights list`; see '
                                'core/teacher/resolve.py) or a timm model name (e.g. vit_small_patch16_224.dino, '
                                'vit_small_patch14_dinov2.lvd142m)')
    teacher_checkpoint: str = option('', "local weights file (.pth/.safetensors), used first; '' = look in the HF "
                                     'cache and the teacher store')
    teacher_random_init: bool = option(False, 'random teacher weights (tests/throughput only)')
    teacher_input_width: int = option(320, 'image width fed to the ViT (height keeps aspect)', 'px', (64, 2048))
    feature_dim: int = option(64, 'student feature size after PCA of the teacher features', range=(3, 768))
    device: str = option('auto', "'auto' (cuda if available), 'cpu', 'cuda' or 'cuda:N'",
                         choices=('auto', 'cpu', 'cuda', 'cuda:N'), choice_pattern=r'auto|cpu|cuda(:\d+)?')
    # --- depth
    use_depth: bool = option(True, 'use the `depth` topic whenever it publishes (RGB-only otherwise)', live=True)
    stereo_depth: bool = option(True, 'without depth images, triangulate keyframe depth by multi-view stereo '
                                'between posed keyframes (false: geometry from colour alone, slow to converge)')
    min_depth: float = option(0.1, 'depth below this is treated as invalid', 'm', (0.0, 10.0), live=True)
    max_depth: float = option(5.0, 'depth above this is treated as invalid', 'm', (0.1, 100.0), live=True)
    max_position: float = option(1000.0, 'plausible workspace: camera positions, scene bounds and map contents '
                                 'farther than this from the world origin are rejected as bad input', 'm',
                                 (1.0, 1e6))
    # --- keyframes
    keyframe_translation: float = option(0.05, 'camera motion that makes a new keyframe', 'm', (0.0, 10.0))
    keyframe_rotation: float = option(5.0, 'camera rotation that makes a new keyframe', 'deg', (0.0, 180.0))
    max_keyframes: int = option(64, 'keyframe buffer size (bounded memory)', range=(2, 10000))
    keyframe_width: int = option(160, 'keyframes are stored downsampled to this width', 'px', (16, 1920))
    # --- field and training
    scene_bounds: tuple = option((0.0,) * 6, 'xmin ymin zmin xmax ymax zmax in world_frame; all zero = from the '
                                 'first frames', 'm', length=6)
    bounds_keyframes: int = option(3, 'keyframes used to estimate the scene bounds before training starts',
                                   range=(1, 1000))
    rays_per_step: int = option(1024, 'rays per training step', range=(64, 65536))
    learning_rate: float = option(1e-2, 'Adam learning rate while keyframes arrive', range=(1e-5, 1.0))
    lr_half_life: int = option(500, 'once no keyframe has arrived for this many training steps the learning '
                               'rate has halved (and so on, down to lr_min_factor; a new keyframe restores '
                               'it); 0 = constant', 'steps', (0, 10 ** 7))
    lr_min_factor: float = option(0.1, 'lowest learning rate, as a share of learning_rate', range=(0.0, 1.0))
    patch_loss_weight: float = option(0.0, "weight of the patch loss: the student's features averaged over a "
                                      "teacher patch are fitted to the patch's token (core/trainer.py); 0 = off",
                                      range=(0.0, 100.0))
    patch_loss_share: float = option(0.5, 'share of rays_per_step drawn as whole teacher patches for the patch loss',
                                     range=(0.0, 1.0))
    seed: int = option(0, 'random seed of ray sampling and segmentation', range=(0, 2 ** 31 - 1))
    # --- outputs
    voxel_size: float = option(0.01, 'voxel size of published clouds', 'm', (0.001, 1.0))
    num_segments: int = option(8, 'feature clusters before spatial splitting into segment labels', range=(1, 256))
    query_threshold: float = option(0.0, 'cosine-similarity threshold of queries; 0 = automatic', range=(0.0, 1.0),
                                    live=True)
    render_width: int = option(160, 'width of feature images and masks rendered from the field', 'px', (16, 1920))
    cloud_refresh_steps: int = option(50, 'training steps after which the published cloud is re-extracted',
                                      range=(1, 100000))
    pca_fit_steps: int = option(300, 'PCA colours of the features are refitted until this many training steps',
                                range=(0, 10 ** 9))
    queue_size: int = option(2, 'frames waiting for the worker (newest wins, drops counted)', range=(1, 100))
    # --- fused teacher layer and the choice of features (core/mapping/fused.py, sources.py)
    fused_max_voxels: int = option(200000, 'voxels (of voxel_size) kept by the fused-teacher layer, which answers '
                                   'from the first keyframe with depth; the least recently seen are evicted',
                                   range=(1000, 10 ** 8))
    feature_source: str = option('auto', "features of clouds and queries: 'auto' (measured on held-out keyframes: "
                                 "the fused layer until the student or their combination predicts unseen views "
                                 "better), or always 'fused', 'student' or 'combined'", choices=SOURCE_CHOICES)
    holdout_every: int = option(5, 'every N-th keyframe is kept out of feature training to measure student vs '
                                'fused features on it (0 or 1: none, the fused layer answers)', range=(0, 1000))
    holdout_eval_steps: int = option(100, 'training steps between held-out measurements', range=(1, 10 ** 6))
    query_max_share: float = option(MAX_ANSWER_SHARE, 'object answers covering more of the cloud than this '
                                    'share are refused (empty answer, reason too_large)', range=(0.0, 1.0), live=True)
    query_min_spread: float = option(MIN_SIMILARITY_SPREAD, 'queries whose similarities over the cloud spread '
                                     '(p1..p99) less than this are refused: features not discriminative yet '
                                     '(reason not_converged)', range=(0.0, 2.0), live=True)
    # --- nested (parameters field.*, render.*, stereo.*, upsample.*)
    field_config: FieldConfig = field(default_factory=FieldConfig)
    render_config: RenderSettings = field(default_factory=RenderSettings)
    stereo_config: StereoConfig = field(default_factory=StereoConfig)
    upsample_config: UpsampleConfig = field(default_factory=UpsampleConfig)

    @classmethod
    def from_dict(cls, d: dict) -> 'MapperConfig':
        """Build from a flat dict (e.g. ROS parameters, nested ones as ``field.geo_levels``);
        unknown keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)} - {n for n, _, _ in NESTED}
        kw = {k: v for k, v in d.items() if k in names}
        if 'scene_bounds' in kw:
            kw['scene_bounds'] = tuple(float(v) for v in kw['scene_bounds'])
        for attr, prefix, sub in NESTED:
            sub_names = {f.name for f in dataclasses.fields(sub)}
            sub_kw = {k[len(prefix):]: v for k, v in d.items()
                      if k.startswith(prefix) and k[len(prefix):] in sub_names}
            kw[attr] = sub(**sub_kw)
        return cls(**kw)


def engine_options() -> list[OptionInfo]:
    """Every documented engine setting, nested ones with their parameter prefix."""
    out = options_of(MapperConfig)
    for _, prefix, sub in NESTED:
        out += options_of(sub, prefix)
    return out


#: names of the settings that may change while the engine runs (``Mapper.update_settings``)
LIVE_SETTINGS = frozenset(o.name for o in options_of(MapperConfig) if o.live)
