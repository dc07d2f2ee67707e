"""DINO / DINOv2 ViT teacher (timm): dense, L2-normalised patch features of any image size.

Supported by name (any timm ViT with a patch embedding should work, these are tested):
``vit_small_patch16_224.dino`` (ViT-S/16, default), ``vit_small_patch8_224.dino`` (ViT-S/8),
``vit_small_patch14_dinov2.lvd142m`` (DINOv2 ViT-S/14).

Weights, in this order (never silently random):

1. ``checkpoint``: a local ``.pth`` / ``.pt`` / ``.safetensors`` file (plain state dict or a DINO
   training checkpoint nested under ``'teacher'`` / ``'model'`` / ``'state_dict'`` with
   ``module.`` / ``backbone.`` prefixes), loaded safely (weights only);
2. the local Hugging Face cache (``timm/<model_name>``) or torch hub cache, never the network;
3. otherwise :class:`WeightsUnavailableError` explaining how to provide them.

``random_init=True`` skips 1-3 and keeps timm's random initialisation (tests, throughput).
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F

from n3f_ros.core.device import resolve_device
from n3f_ros.core.frame import Frame
from n3f_ros.core.teacher.base import (
    CheckpointError,
    Teacher,
    TeacherError,
    WeightsUnavailableError,
    check_rgb,
    l2_normalize,
)
from n3f_ros.core.teacher.checkpoint import find_cached_weights, hf_hub_cache_dir, load_backbone_weights

DEFAULT_MODEL = 'vit_small_patch16_224.dino'
#: torch seed of ``random_init`` weights (throughput tests and benchmarks stay reproducible)
RANDOM_INIT_SEED = 0


def _create_vit(model_name: str, weights=None) -> torch.nn.Module:
    """Build the timm ViT, never downloading (``pretrained=False``).

    ``weights`` None: timm's random initialisation. Otherwise a local weights file: the model is
    built on the ``meta`` device (skipping the costly random init) and every tensor is then
    assigned from the file (strict), so nothing is left uninitialised.
    """
    import timm
    kwargs = {'pretrained': False, 'num_classes': 0, 'dynamic_img_size': True}
    try:
        if weights is None:
            with torch.random.fork_rng(devices=[]):     # random weights, but the same ones every run
                torch.manual_seed(RANDOM_INIT_SEED)
                model = timm.create_model(model_name, **kwargs)
        else:
            with torch.device('meta'):
                model = timm.create_model(model_name, **kwargs)
    except Exception as e:  # unknown name, or not a ViT supporting dynamic sizes
        raise TeacherError(f'cannot create timm model {model_name!r} with dynamic_img_size=True: {e}') from e
    if not hasattr(model, 'patch_embed') or not hasattr(model, 'num_prefix_tokens'):
        raise TeacherError(f'timm model {model_name!r} is not a ViT with patch tokens')
    if weights is not None:
        if len(model.state_dict()) != len(list(model.parameters())) + len(list(model.buffers())):
            model = timm.create_model(model_name, **kwargs)   # has non-persistent buffers: init normally
        load_backbone_weights(model, weights)
    return model


def _pretrained_cfg(model_name: str) -> dict:
    import timm
    cfg = timm.models.get_pretrained_cfg(model_name)
    if cfg is None:
        raise TeacherError(f'unknown timm model {model_name!r}')
    return cfg.to_dict()


def _unavailable_message(model_name: str, hub_id: str | None) -> str:
    repo = hub_id or f'timm/{model_name}'
    return (
        f'no pretrained weights for teacher {model_name!r}: no checkpoint file was given and '
        f'{repo!r} is not in the local Hugging Face cache ({hf_hub_cache_dir()}) (n3f_ros never '
        f'downloads weights). Either (a) set the parameter teacher_checkpoint to a local weights file '
        f'(.pth/.pt state dict or DINO checkpoint, or .safetensors), or (b) on a machine with internet '
        f'run `python -c "import timm; timm.create_model(\'{model_name}\', pretrained=True)"` '
        f'(or `huggingface-cli download {repo}`), then copy its Hugging Face cache folder (HF_HOME, '
        f'default ~/.cache/huggingface) here and set HF_HOME to it. Use teacher_random_init=true only '
        f'for tests/throughput (features are then meaningless).')


class DinoTeacher(Teacher):
    """timm ViT teacher returning last-layer patch tokens as an ``(h, w, C)`` grid.

    Args:
        model_name:  timm model name (see module docstring).
        checkpoint:  local weights file, or None / '' to use the local cache.
        random_init: keep random weights (explicit opt-in only).
        device:      'cpu', 'cuda', 'cuda:N' or 'auto'.
        input_width: width in pixels of the image fed to the ViT (height keeps the aspect ratio);
                     None = the frame's own width. Both sides are then rounded to the nearest
                     multiple of the patch size (at least one patch), so the grid is
                     ``(h, w) = (H_in / stride, W_in / stride)`` and covers the whole frame.

    Attributes: ``name`` (model name), ``dim`` (embedding width, 384 for ViT-S), ``stride``
    (patch size in network-input pixels: 16, 14 or 8), ``device``, ``weights_source`` (where the
    weights came from: a file path or ``'random'``), ``model``, ``mean``/``std`` (3,) normalisation.
    """

    def __init__(self, model_name: str = DEFAULT_MODEL, checkpoint=None, random_init: bool = False,
                 device='cpu', input_width: int | None = None):
        if input_width is not None and (int(input_width) != input_width or input_width < 1):
            raise ValueError(f'input_width must be a positive integer or None, got {input_width!r}')
        self.name = str(model_name)
        self.device = resolve_device(device)
        if checkpoint:
            model = _create_vit(self.name, checkpoint)
            self.weights_source = str(checkpoint)
        elif random_init:
            model = _create_vit(self.name)
            self.weights_source = 'random'
        else:
            cfg = _pretrained_cfg(self.name)
            cached = find_cached_weights(cfg)
            if cached is None:
                raise WeightsUnavailableError(_unavailable_message(self.name, cfg.get('hf_hub_id')))
            try:
                model = _create_vit(self.name, cached)
            except CheckpointError as e:
                raise WeightsUnavailableError(f'cached weights for {self.name!r} are unusable: {e}. '
                                              + _unavailable_message(self.name, None)) from e
            self.weights_source = str(cached)
        self.model = model.eval().requires_grad_(False).to(self.device)
        patch = model.patch_embed.patch_size
        patch = patch if isinstance(patch, int) else patch[0]
        self.stride = int(patch)
        self.dim = int(model.embed_dim)
        self.input_width = None if input_width is None else int(input_width)
        cfg = model.pretrained_cfg
        mean, std = cfg.get('mean', (0.485, 0.456, 0.406)), cfg.get('std', (0.229, 0.224, 0.225))
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device)

    def input_size(self, width: int, height: int) -> tuple[int, int]:
        """Network input ``(W_in, H_in)`` in pixels for a ``width`` x ``height`` image."""
        if width < 1 or height < 1:
            raise ValueError(f'image size must be positive, got {width}x{height}')
        tw = float(self.input_width or width)
        th = height * tw / width
        p = self.stride
        return max(p, round(tw / p) * p), max(p, round(th / p) * p)

    def grid_shape(self, width: int, height: int) -> tuple[int, int]:
        """Feature grid ``(h, w)`` for a ``width`` x ``height`` image."""
        w_in, h_in = self.input_size(width, height)
        return h_in // self.stride, w_in // self.stride

    def _autocast(self):
        if self.device.type != 'cuda':
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast('cuda', dtype=dtype)

    def features(self, rgb: np.ndarray) -> torch.Tensor:
        """``(H, W, 3)`` uint8 RGB -> ``(h, w, C)`` float32 L2-normalised features on ``self.device``."""
        rgb = check_rgb(rgb)
        H, W = rgb.shape[:2]
        w_in, h_in = self.input_size(W, H)
        with torch.inference_mode():
            x = torch.from_numpy(np.require(rgb, requirements=['C', 'W'])).to(self.device)   # copies read-only input
            x = x.permute(2, 0, 1)[None].float().div_(255.0)
            if (h_in, w_in) != (H, W):
                x = F.interpolate(x, size=(h_in, w_in), mode='bilinear', align_corners=False,
                                  antialias=(h_in < H or w_in < W))
            x = (x - self.mean[None, :, None, None]) / self.std[None, :, None, None]
            with self._autocast():
                tokens = self.model.forward_features(x)
            patches = tokens[0, self.model.num_prefix_tokens:].float()
            h, w = h_in // self.stride, w_in // self.stride
            if patches.shape[0] != h * w:
                raise TeacherError(f'{self.name}: got {patches.shape[0]} patch tokens, expected {h}x{w}')
            out = l2_normalize(patches.reshape(h, w, self.dim))
        # A plain tensor (not an inference tensor), so trainers may use it in autograd graphs.
        return out.clone()

    def __call__(self, frame: Frame) -> torch.Tensor:
        """Frame -> ``(h, w, C)`` float32 L2-normalised patch features (see class docstring)."""
        return self.features(frame.rgb)
