"""DINO / DINOv2 ViT teacher (timm): dense, L2-normalised patch features of any image size.

Supported by name (any timm ViT with a patch embedding should work, these are tested):
``auto`` (default, see below), ``vit_small_patch16_224.dino`` (ViT-S/16), ``vit_small_patch8_224.dino``
(ViT-S/8), ``vit_small_patch14_dinov2.lvd142m`` / ``vit_small_patch14_dinov2`` (DINOv2 ViT-S/14).

Weights come from ``core/teacher/resolve.py`` (the one resolution order, never silently random,
never downloaded): an explicit ``checkpoint`` file, else official weights in the local Hugging Face
cache, else the DINOv2 ViT-S/14 installed in the local teacher store, else
:class:`WeightsUnavailableError` explaining how to provide them. ``random_init=True`` keeps timm's
random initialisation (tests, throughput).
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
from n3f_ros.core.teacher.checkpoint import load_backbone_weights
from n3f_ros.core.teacher.resolve import AUTO, resolve_weights, unavailable_message

#: Default teacher: resolved by core/teacher/resolve.py (official DINO in the HF cache, else the installed DINOv2).
DEFAULT_MODEL = AUTO
#: torch seed of ``random_init`` weights (throughput tests and benchmarks stay reproducible)
RANDOM_INIT_SEED = 0


def _create_vit(model_name: str, weights=None, model_kwargs: dict | None = None) -> torch.nn.Module:
    """Build the timm ViT, never downloading (``pretrained=False``).

    ``weights`` None: timm's random initialisation. Otherwise a local weights file: the model is
    built on the ``meta`` device (skipping the costly random init) and every tensor is then
    assigned from the file (strict), so nothing is left uninitialised. ``model_kwargs``: timm
    architecture overrides (e.g. ``depth`` of a small converted test model).
    """
    import timm
    kwargs = {**(model_kwargs or {}), 'pretrained': False, 'num_classes': 0, 'dynamic_img_size': True}
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


class DinoTeacher(Teacher):
    """timm ViT teacher returning last-layer patch tokens as an ``(h, w, C)`` grid.

    Args:
        model_name:  ``'auto'`` or a timm model name (see module docstring).
        checkpoint:  local weights file, or None / '' to look in the local caches.
        random_init: keep random weights (explicit opt-in only).
        device:      'cpu', 'cuda', 'cuda:N' or 'auto'.
        input_width: width in pixels of the image fed to the ViT (height keeps the aspect ratio);
                     None = the frame's own width. Both sides are then rounded to the nearest
                     multiple of the patch size (at least one patch), so the grid is
                     ``(h, w) = (H_in / stride, W_in / stride)`` and covers the whole frame.

    Attributes: ``name`` (the resolved timm model name), ``dim`` (embedding width, 384 for ViT-S),
    ``stride`` (patch size in network-input pixels: 16, 14 or 8), ``device``, ``weights_source``
    (a file path or ``'random'``), ``provenance`` (dict: model, weights, source, sha256, licence,
    origin; see ``resolve.py``), ``model``, ``mean``/``std`` (3,) input normalisation (the weights'
    provenance where it states one, else timm's pretrained config; ImageNet for DINO/DINOv2).
    """

    def __init__(self, model_name: str = DEFAULT_MODEL, checkpoint=None, random_init: bool = False,
                 device='cpu', input_width: int | None = None):
        if input_width is not None and (int(input_width) != input_width or input_width < 1):
            raise ValueError(f'input_width must be a positive integer or None, got {input_width!r}')
        self.device = resolve_device(device)
        res = resolve_weights(str(model_name), checkpoint or None, random_init)
        self.name = res.model_name
        if res.weights is None:
            model = _create_vit(self.name, model_kwargs=res.model_kwargs)
            self.weights_source = 'random'
        else:
            try:
                model = _create_vit(self.name, res.weights, res.model_kwargs)
            except CheckpointError as e:
                if res.source == 'checkpoint':
                    raise
                raise WeightsUnavailableError(
                    f'{res.source} weights {str(res.weights)!r} for {self.name!r} are unusable: {e}. '
                    + unavailable_message(str(model_name), res.tried)) from e
            self.weights_source = str(res.weights)
        self.provenance = dict(res.provenance)
        self.model = model.eval().requires_grad_(False).to(self.device)
        patch = model.patch_embed.patch_size
        patch = patch if isinstance(patch, int) else patch[0]
        self.stride = int(patch)
        self.dim = int(model.embed_dim)
        self.input_width = None if input_width is None else int(input_width)
        cfg = model.pretrained_cfg
        mean = res.mean or cfg.get('mean', (0.485, 0.456, 0.406))
        std = res.std or cfg.get('std', (0.229, 0.224, 0.225))
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
