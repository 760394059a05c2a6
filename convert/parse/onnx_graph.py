"""An ONNX image classifier graph -> an equivalent Keras 3 model in NHWC.

PyTorch (and so ONNX) lays activations out as N,C,H,W; TFLite and the Pi's
kernels want N,H,W,C. Instead of wrapping the ONNX graph in transposes, every
4-D activation is built directly in NHWC: convolution kernels, constants and
axis arguments are permuted once, here, in numpy. The int8 model that comes out
has no TRANSPOSE at its input or output (``convert/pipeline/onnx_import.py`` checks it),
and none inside either unless a Flatten of a spatial map needs PyTorch's
C,H,W element order.

The op set is what image classifiers exported from torchvision, timm and
fast.ai use (convolutions, batch norm, activations, pooling, linear layers,
softmax, residual adds, squeeze-excite multiplies, concatenation) plus the
shape arithmetic exporters emit around a flatten. Anything else is refused
with one line naming the op and the node.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge.errors import ModelError, UsageError, first_line

log = logging.getLogger(__name__)

#: ONNX -> Keras axis of a 4-D activation held as NHWC (ONNX's N,C,H,W).
_NCHW_TO_NHWC_AXIS = {0: 0, 1: 3, 2: 1, 3: 2}


@dataclass
class Val:
    """One ONNX value while building: a Keras tensor or a numpy constant.

    ``nchw`` marks a 4-D activation whose ONNX axes are N,C,H,W but whose Keras
    tensor is N,H,W,C. ``nonneg`` records that every element is >= 0 (after a
    ReLU, say), which lets a padded max pool pad with zeros exactly.
    """

    t: Any
    nchw: bool = False
    nonneg: bool = False

    @property
    def const(self) -> bool:
        return isinstance(self.t, np.ndarray)

    def onnx_shape(self) -> tuple[int, ...]:
        """The shape in ONNX's axis order (batch 1)."""
        if self.const:
            return tuple(self.t.shape)
        s = tuple(int(d) if d is not None else 1 for d in self.t.shape)
        if self.nchw:
            return (s[0], s[3], s[1], s[2])
        return s


@dataclass
class KerasGraph:
    """The result of :func:`build_keras`."""

    model: Any
    width: int
    height: int
    input_name: str
    output_name: str
    output_role: str  # "logits" or "probabilities"
    classes: int
    ops: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    inner_transposes: int = 0


def load_onnx(path: Path | str):
    """Read and check an ONNX file.

    Raises:
        ModelError: missing, not ONNX, or invalid, with the reason in one line.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"ONNX model not found: {path}")
    try:
        import onnx
    except ImportError as e:
        raise ModelError("convert onnx needs the onnx package: pip install 'doorguard[onnx]'") from e
    try:
        model = onnx.load(str(path))
    except Exception as e:  # protobuf DecodeError and friends
        raise ModelError(f"{path} is not a readable ONNX model ({first_line(e)}): export it again") from e
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        raise ModelError(f"{path} is not a valid ONNX model: {first_line(e)}") from e
    if not model.graph.node:
        raise ModelError(f"{path} has an empty ONNX graph")
    return model


def _attrs(node) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _dims(value_info) -> list[int | str | None]:
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return []
    out: list[int | str | None] = []
    for d in t.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            out.append(d.dim_param)
        else:
            out.append(None)
    return out


def input_info(model, layout: str) -> tuple[str, int | None, int | None, int]:
    """(name, height, width, channels) of the single image input; None for a dynamic size.

    Raises:
        ModelError: not exactly one input, or not a 4-D image in the given layout.
    """
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ModelError(f"the ONNX model has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); "
                         f"a classifier takes one image")
    dims = _dims(inputs[0])
    if len(dims) != 4:
        raise ModelError(f"ONNX input '{inputs[0].name}' has shape {dims}; a classifier takes a 4-D image "
                         f"batch ({'N,3,H,W' if layout == 'nchw' else 'N,H,W,3'})")
    c, h, w = (dims[1], dims[2], dims[3]) if layout == "nchw" else (dims[3], dims[1], dims[2])
    if c != 3:
        other = "nhwc" if layout == "nchw" else "nchw"
        raise ModelError(f"ONNX input '{inputs[0].name}' {dims} does not have 3 channels in {layout.upper()} "
                         f"order (try --layout {other})")
    as_int = lambda d: d if isinstance(d, int) and d > 0 else None  # noqa: E731
    return inputs[0].name, as_int(h), as_int(w), 3


# ---------------------------------------------------------------- constant folding (shape arithmetic)


def _np_gather(x, idx, axis=0):
    return np.take(x, idx, axis=axis)


def _np_slice(data, starts, ends, axes=None, steps=None):
    axes = list(range(len(starts))) if axes is None else [int(a) for a in axes]
    steps = [1] * len(starts) if steps is None else [int(s) for s in steps]
    sl = [slice(None)] * data.ndim
    for a, s, e, st in zip(axes, starts, ends, steps):
        n = data.shape[a]
        e = int(max(min(int(e), n), -n - 1))
        sl[a] = slice(int(s), e, st)
    return data[tuple(sl)]


# ---------------------------------------------------------------- the builder


class _Builder:
    def __init__(self, model, layout: str, height: int, width: int):
        import keras
        from onnx import numpy_helper

        self.k = keras
        self.model = model
        self.layout = layout
        self.opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=13)
        self.vals: dict[str, Val] = {}
        for init in model.graph.initializer:
            self.vals[init.name] = Val(numpy_helper.to_array(init))
        self.consumers: dict[str, list] = {}
        for node in model.graph.node:
            for i in node.input:
                self.consumers.setdefault(i, []).append(node)
        self.skip: set[int] = set()
        self.ops: dict[str, int] = {}
        self.notes: list[str] = []
        self.inner_transposes = 0
        self.height, self.width = height, width
        self.graph_outputs = [o.name for o in model.graph.output]

    # -- helpers

    def val(self, name: str) -> Val:
        if name not in self.vals:
            raise ModelError(f"ONNX value '{name}' is used before it is defined (graph not topologically sorted?)")
        return self.vals[name]

    def const(self, node, i: int, what: str) -> np.ndarray:
        if i >= len(node.input) or not node.input[i]:
            raise ModelError(f"{self._where(node)}: missing {what}")
        v = self.val(node.input[i])
        if not v.const:
            raise ModelError(f"{self._where(node)}: {what} must be a constant (it is computed at run time); "
                             f"this import supports constant weights only")
        return v.t

    def opt_const(self, node, i: int) -> np.ndarray | None:
        if i >= len(node.input) or not node.input[i]:
            return None
        v = self.val(node.input[i])
        return v.t if v.const else None

    @staticmethod
    def _where(node) -> str:
        return f"ONNX node '{node.name or node.output[0]}' ({node.op_type})"

    def act(self, v: Val) -> Val:
        if v.const:
            raise ModelError("a constant where an activation was expected: the graph computes nothing "
                             "from its input there")
        return v

    def axis4(self, v: Val, axis: int, node) -> int:
        """ONNX axis -> Keras axis for value v."""
        rank = len(v.onnx_shape())
        a = axis + rank if axis < 0 else axis
        if not 0 <= a < rank:
            raise ModelError(f"{self._where(node)}: axis {axis} out of range for rank {rank}")
        return _NCHW_TO_NHWC_AXIS[a] if v.nchw else a

    def layout_const(self, c: np.ndarray, like: Val) -> np.ndarray:
        """A constant broadcast against ONNX-layout ``like``, permuted to ``like``'s Keras layout."""
        c = np.asarray(c, dtype=np.float32)
        if not like.nchw or c.ndim == 0:
            return c
        if c.ndim > 4:
            raise ModelError(f"constant of rank {c.ndim} broadcast against a 4-D activation")
        c = c.reshape((1,) * (4 - c.ndim) + c.shape)
        return np.transpose(c, (0, 2, 3, 1))

    def pads_for(self, in_hw, k_eff, strides, pads, auto_pad) -> tuple[str, tuple | None]:
        """('same' | 'valid', explicit ((top, bottom), (left, right)) or None)."""
        if auto_pad in ("VALID",):
            return "valid", None
        if auto_pad == "SAME_UPPER":
            return "same", None
        tf_same = []
        for n, k, s in zip(in_hw, k_eff, strides):
            out = math.ceil(n / s)
            total = max((out - 1) * s + k - n, 0)
            tf_same.append((total // 2, total - total // 2))
        if auto_pad == "SAME_LOWER":
            explicit = tuple((b, a) for a, b in tf_same)
        else:
            p = list(pads) if pads else [0, 0, 0, 0]
            explicit = ((int(p[0]), int(p[2])), (int(p[1]), int(p[3])))
        if all(v == 0 for pair in explicit for v in pair):
            return "valid", None
        if tuple(tf_same) == explicit:
            return "same", None
        return "valid", explicit

    # -- the walk

    def build(self, input_name: str) -> KerasGraph:
        k = self.k
        inp = k.Input((self.height, self.width, 3), batch_size=1, name="image")
        # NCHW models get an NHWC input directly (no transpose); an NHWC model's input is as is.
        self.vals[input_name] = Val(inp, nchw=self.layout == "nchw")
        nodes = list(self.model.graph.node)
        for idx, node in enumerate(nodes):
            if idx in self.skip:
                continue
            handler: Callable | None = getattr(self, f"op_{node.op_type}", None)
            if node.domain not in ("", "ai.onnx") or handler is None:
                raise ModelError(f"{self._where(node)} is not supported by doorguard's ONNX import "
                                 f"(supported: {', '.join(supported_ops())}); simplify or re-export the model "
                                 f"without it")
            self.ops[node.op_type] = self.ops.get(node.op_type, 0) + 1
            try:
                outs = handler(node, idx, nodes)
            except ModelError:
                raise
            except Exception as e:  # a Keras shape error etc.: name the node
                raise ModelError(f"{self._where(node)} could not be built: {first_line(e)}") from e
            if isinstance(outs, Val):
                outs = [outs]
            for name, v in zip(node.output, outs):
                if name:
                    self.vals[name] = v
        if len(self.graph_outputs) != 1:
            raise ModelError(f"the ONNX model has {len(self.graph_outputs)} outputs; a classifier has one")
        out_name = self.graph_outputs[0]
        out = self.act(self.val(out_name))
        shape = out.onnx_shape()
        if len(shape) == 4 and shape[2] == 1 and shape[3] == 1:
            out = Val(k.layers.Reshape((shape[1],))(out.t))
        elif len(shape) != 2:
            raise ModelError(f"ONNX output '{out_name}' has shape {list(shape)}; a classifier outputs "
                             f"[1, classes]")
        role = self.output_role(out_name)
        model = k.Model(inp, out.t, name="onnx_import")
        return KerasGraph(model=model, width=self.width, height=self.height, input_name=input_name,
                          output_name=out_name, output_role=role, classes=int(out.t.shape[-1]),
                          ops=dict(sorted(self.ops.items())), notes=self.notes,
                          inner_transposes=self.inner_transposes)

    def output_role(self, name: str) -> str:
        producer = {o: n for n in self.model.graph.node for o in n.output}
        n = producer.get(name)
        while n is not None and n.op_type in ("Identity", "Reshape", "Flatten", "Squeeze"):
            n = producer.get(n.input[0])
        if n is not None and n.op_type == "Softmax":
            return "probabilities"
        return "logits"

    # ---------------------------------------------------------------- ops
    # Each op_X(node, idx, nodes) returns the Val(s) of the node's outputs.

    def op_Identity(self, node, idx, nodes):
        return self.val(node.input[0])

    op_Dropout = op_Identity

    def op_Constant(self, node, idx, nodes):
        from onnx import numpy_helper

        a = _attrs(node)
        if "value" in a:
            return Val(numpy_helper.to_array(a["value"]))
        for key in ("value_float", "value_int"):
            if key in a:
                return Val(np.asarray(a[key]))
        for key in ("value_floats", "value_ints"):
            if key in a:
                return Val(np.asarray(a[key]))
        raise ModelError(f"{self._where(node)}: unsupported Constant attribute {sorted(a)}")

    def op_Shape(self, node, idx, nodes):
        shape = np.asarray(self.val(node.input[0]).onnx_shape(), dtype=np.int64)
        a = _attrs(node)
        return Val(shape[a.get("start", 0):a.get("end", None)])

    def _all_const(self, node) -> bool:
        return all(not i or self.val(i).const for i in node.input)

    def _fold(self, node, fn):
        if not self._all_const(node):
            raise ModelError(f"{self._where(node)} on a run-time tensor is not supported (only on "
                             f"constants and shapes)")
        return Val(np.asarray(fn(*[self.val(i).t if i else None for i in node.input])))

    def op_Gather(self, node, idx, nodes):
        return self._fold(node, lambda x, i: _np_gather(x, i, _attrs(node).get("axis", 0)))

    def op_Cast(self, node, idx, nodes):
        from onnx import helper

        to = helper.tensor_dtype_to_np_dtype(_attrs(node)["to"])
        return self._fold(node, lambda x: x.astype(to))

    def op_Slice(self, node, idx, nodes):
        a = _attrs(node)
        if self.opset < 10:
            return self._fold(node, lambda x: _np_slice(x, a["starts"], a["ends"], a.get("axes")))
        return self._fold(node, lambda x, s, e, ax=None, st=None: _np_slice(x, s, e, ax, st))

    def op_Unsqueeze(self, node, idx, nodes):
        axes = _attrs(node).get("axes")
        if axes is None:
            axes = self.const(node, 1, "axes")
        v = self.val(node.input[0])
        if not v.const:
            raise ModelError(f"{self._where(node)} on a run-time tensor is not supported")
        out = v.t
        for ax in sorted(int(a) if a >= 0 else int(a) + out.ndim + len(axes) for a in axes):
            out = np.expand_dims(out, ax)
        return Val(out)

    def op_Squeeze(self, node, idx, nodes):
        axes = _attrs(node).get("axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = self.const(node, 1, "axes")
        v = self.val(node.input[0])
        if v.const:
            return Val(np.squeeze(v.t, axis=None if axes is None else tuple(int(a) for a in axes)))
        shape = v.onnx_shape()
        axes = [i for i, d in enumerate(shape) if d == 1] if axes is None else [
            int(a) + len(shape) if a < 0 else int(a) for a in axes]
        if len(shape) == 4 and sorted(axes) == [2, 3]:  # N,C,1,1 -> N,C
            return Val(self.k.layers.Reshape((shape[1],))(v.t), nonneg=v.nonneg)
        raise ModelError(f"{self._where(node)}: squeezing axes {axes} of {list(shape)} is not supported")

    def op_Concat(self, node, idx, nodes):
        axis = int(_attrs(node)["axis"])
        vs = [self.val(i) for i in node.input]
        if all(v.const for v in vs):
            return Val(np.concatenate([v.t for v in vs], axis=axis))
        if any(v.const for v in vs) or len({v.nchw for v in vs}) != 1:
            raise ModelError(f"{self._where(node)}: concatenating constants with activations, or mixed "
                             f"layouts, is not supported")
        ax = self.axis4(vs[0], axis, node)
        return Val(self.k.layers.Concatenate(axis=ax)([v.t for v in vs]), nchw=vs[0].nchw,
                   nonneg=all(v.nonneg for v in vs))

    # -- convolution and normalization

    def _bn_after(self, node, idx, nodes):
        """The BatchNormalization that alone consumes this node's output, with constant parameters."""
        users = self.consumers.get(node.output[0], [])
        if len(users) != 1 or users[0].op_type != "BatchNormalization" or node.output[0] in self.graph_outputs:
            return None, None
        bn = users[0]
        if any(not self.val(i).const for i in bn.input[1:5]):
            return None, None
        return bn, nodes.index(bn)

    def op_Conv(self, node, idx, nodes):
        k = self.k
        x = self.act(self.val(node.input[0]))
        if not x.nchw:
            raise ModelError(f"{self._where(node)}: input is not an N,C,H,W activation (an NHWC model needs "
                             f"--layout nhwc and a Transpose to N,C,H,W before its first Conv)")
        w = self.const(node, 1, "weights").astype(np.float32)
        b = self.opt_const(node, 2)
        if len(node.input) > 2 and node.input[2] and b is None:
            raise ModelError(f"{self._where(node)}: bias must be a constant")
        a = _attrs(node)
        if w.ndim != 4:
            raise ModelError(f"{self._where(node)}: only 2-D convolutions are supported (weights {list(w.shape)})")
        m_out, cin_g, kh, kw = w.shape
        group = int(a.get("group", 1))
        strides = tuple(int(s) for s in a.get("strides", [1, 1]))
        dil = tuple(int(d) for d in a.get("dilations", [1, 1]))
        b = np.zeros(m_out, np.float32) if b is None else b.astype(np.float32)
        bn, bn_idx = self._bn_after(node, idx, nodes)
        if bn is not None:
            w, b = _fold_bn(w, b, *[self.val(i).t for i in bn.input[1:5]], _attrs(bn).get("epsilon", 1e-5))
            self.skip.add(bn_idx)
            self.ops["BatchNormalization(folded)"] = self.ops.get("BatchNormalization(folded)", 0) + 1
        _, c_in, h, wd = x.onnx_shape()
        k_eff = ((kh - 1) * dil[0] + 1, (kw - 1) * dil[1] + 1)
        padding, explicit = self.pads_for((h, wd), k_eff, strides, a.get("pads"), _auto_pad(a))
        t = x.t
        if explicit is not None:
            t = k.layers.ZeroPadding2D(explicit)(t)
        if group == 1:
            layer = k.layers.Conv2D(m_out, (kh, kw), strides=strides, padding=padding, dilation_rate=dil)
            layer.build(t.shape)
            layer.set_weights([w.transpose(2, 3, 1, 0), b])
        elif group == c_in and cin_g == 1:
            mult = m_out // c_in
            layer = k.layers.DepthwiseConv2D((kh, kw), strides=strides, padding=padding, depth_multiplier=mult,
                                             dilation_rate=dil)
            layer.build(t.shape)
            # ONNX output channel o = c * mult + j  ->  Keras kernel [kh, kw, c, j].
            layer.set_weights([w.reshape(c_in, mult, kh, kw).transpose(2, 3, 0, 1), b])
        else:
            layer = k.layers.Conv2D(m_out, (kh, kw), strides=strides, padding=padding, dilation_rate=dil,
                                    groups=group)
            layer.build(t.shape)
            layer.set_weights([w.transpose(2, 3, 1, 0), b])
        out = Val(layer(t), nchw=True)
        if bn is not None:
            self.vals[bn.output[0]] = out
        return out

    def op_BatchNormalization(self, node, idx, nodes):
        x = self.act(self.val(node.input[0]))
        scale, bias, mean, var = (self.const(node, i, n).astype(np.float32)
                                  for i, n in ((1, "scale"), (2, "bias"), (3, "mean"), (4, "var")))
        eps = float(_attrs(node).get("epsilon", 1e-5))
        a = scale / np.sqrt(var + eps)
        c = bias - mean * a
        shape = x.onnx_shape()
        if len(shape) == 4:
            a4, c4 = a.reshape(1, -1, 1, 1), c.reshape(1, -1, 1, 1)
        elif len(shape) == 2:
            a4, c4 = a.reshape(1, -1), c.reshape(1, -1)
        else:
            raise ModelError(f"{self._where(node)}: batch norm over rank {len(shape)} is not supported")
        ops = self.k.ops
        t = ops.add(ops.multiply(x.t, self.layout_const(a4, x)), self.layout_const(c4, x))
        return Val(t, nchw=x.nchw)

    # -- activations

    def op_Relu(self, node, idx, nodes):
        x = self.act(self.val(node.input[0]))
        return Val(self.k.layers.ReLU()(x.t), nchw=x.nchw, nonneg=True)

    def op_Clip(self, node, idx, nodes):
        x = self.act(self.val(node.input[0]))
        a = _attrs(node)
        if self.opset < 11:
            lo, hi = a.get("min", -np.inf), a.get("max", np.inf)
        else:
            lo_c, hi_c = self.opt_const(node, 1), self.opt_const(node, 2)
            lo = -np.inf if lo_c is None else float(lo_c)
            hi = np.inf if hi_c is None else float(hi_c)
        if lo == 0.0 and np.isfinite(hi):
            t = self.k.layers.ReLU(max_value=float(hi))(x.t)
        elif lo == 0.0:
            t = self.k.layers.ReLU()(x.t)
        else:
            t = self.k.ops.clip(x.t, float(lo), float(hi))
        return Val(t, nchw=x.nchw, nonneg=lo >= 0)

    def op_LeakyRelu(self, node, idx, nodes):
        x = self.act(self.val(node.input[0]))
        alpha = float(_attrs(node).get("alpha", 0.01))
        return Val(self.k.layers.LeakyReLU(negative_slope=alpha)(x.t), nchw=x.nchw)

    def op_Sigmoid(self, node, idx, nodes):
        x = self.act(self.val(node.input[0]))
        return Val(self.k.ops.sigmoid(x.t), nchw=x.nchw, nonneg=True)

    def op_Tanh(self, node, idx, nodes):
        x = self.act(self.val(node.input[0]))
        return Val(self.k.ops.tanh(x.t), nchw=x.nchw)

    def op_HardSigmoid(self, node, idx, nodes):
        x = self.act(self.val(node.input[0]))
        a = _attrs(node)
        alpha, beta = float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))
        ops = self.k.ops
        if math.isclose(alpha, 1 / 6, rel_tol=1e-4) and math.isclose(beta, 0.5):
            t = ops.hard_sigmoid(x.t)  # relu6(x + 3) / 6, as torch's hardsigmoid
        else:
            t = ops.clip(ops.add(ops.multiply(x.t, alpha), beta), 0.0, 1.0)
        return Val(t, nchw=x.nchw, nonneg=True)

    def op_HardSwish(self, node, idx, nodes):
        x = self.act(self.val(node.input[0]))
        return Val(self.k.ops.hard_swish(x.t), nchw=x.nchw)

    def op_Softmax(self, node, idx, nodes):
        x = self.act(self.val(node.input[0]))
        shape = x.onnx_shape()
        axis = int(_attrs(node).get("axis", 1 if self.opset < 13 else -1))
        if self.opset < 13 and len(shape) != 2 and not (axis == 1 and shape[2:] == (1, 1)):
            raise ModelError(f"{self._where(node)}: opset {self.opset} softmax flattens from axis {axis}; "
                             f"only [N, classes] is supported")
        if len(shape) == 4 and shape[2:] != (1, 1):
            raise ModelError(f"{self._where(node)}: softmax over a spatial map is not a classifier output")
        return Val(self.k.layers.Softmax(axis=self.axis4(x, axis, node))(x.t), nchw=x.nchw, nonneg=True)

    def op_LogSoftmax(self, node, idx, nodes):
        x = self.act(self.val(node.input[0]))
        if node.output[0] not in self.graph_outputs:
            raise ModelError(f"{self._where(node)}: LogSoftmax is supported only as the model's last op")
        # softmax(log_softmax(z)) == softmax(z): keep the logits, the runtime applies the softmax.
        self.notes.append("final LogSoftmax dropped: the int8 model outputs logits, the runtime's softmax "
                          "gives the same probabilities")
        return x

    # -- elementwise

    def _binary(self, node, fn, name):
        a, b = self.val(node.input[0]), self.val(node.input[1])
        if a.const and b.const:
            return Val(np.asarray(fn(np, a.t, b.t)))
        if a.const or b.const:
            act_v, c = (b, a) if a.const else (a, b)
            c_t = self.layout_const(c.t, act_v)
            ta, tb = (c_t, act_v.t) if a.const else (act_v.t, c_t)
            nonneg = act_v.nonneg and name in ("Mul", "Add", "Div") and bool(np.all(c.t >= 0))
            return Val(fn(self.k.ops, ta, tb), nchw=act_v.nchw, nonneg=nonneg)
        if a.nchw != b.nchw:
            ra, rb = len(a.onnx_shape()), len(b.onnx_shape())
            raise ModelError(f"{self._where(node)}: {name} of a rank-{ra} and a rank-{rb} activation in "
                             f"different layouts is not supported")
        nonneg = a.nonneg and b.nonneg and name in ("Mul", "Add")
        return Val(fn(self.k.ops, a.t, b.t), nchw=a.nchw, nonneg=nonneg)

    def op_Add(self, node, idx, nodes):
        return self._binary(node, lambda m, x, y: m.add(x, y), "Add")

    def op_Sub(self, node, idx, nodes):
        return self._binary(node, lambda m, x, y: m.subtract(x, y), "Sub")

    def op_Mul(self, node, idx, nodes):
        return self._binary(node, lambda m, x, y: m.multiply(x, y), "Mul")

    def op_Div(self, node, idx, nodes):
        a, b = self.val(node.input[0]), self.val(node.input[1])
        if a.const and b.const:
            return Val(np.asarray(a.t / b.t if a.t.dtype.kind == "f" else a.t // b.t))
        if b.const:  # x / c == x * (1 / c): a MUL with a constant quantizes like any other
            inv = np.asarray(1.0 / b.t.astype(np.float32))
            x = self.act(a)
            return Val(self.k.ops.multiply(x.t, self.layout_const(inv, x)), nchw=x.nchw,
                       nonneg=x.nonneg and bool(np.all(b.t > 0)))
        return self._binary(node, lambda m, x, y: m.divide(x, y), "Div")

    # -- pooling

    def op_GlobalAveragePool(self, node, idx, nodes):
        x = self.act(self.val(node.input[0]))
        return Val(self.k.layers.GlobalAveragePooling2D(keepdims=True)(x.t), nchw=True, nonneg=x.nonneg)

    def op_GlobalMaxPool(self, node, idx, nodes):
        x = self.act(self.val(node.input[0]))
        return Val(self.k.layers.GlobalMaxPooling2D(keepdims=True)(x.t), nchw=True, nonneg=x.nonneg)

    def op_ReduceMean(self, node, idx, nodes):
        x = self.act(self.val(node.input[0]))
        a = _attrs(node)
        axes = a.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = self.const(node, 1, "axes")
        axes = sorted(int(v) % 4 for v in (axes if axes is not None else []))
        if not x.nchw or axes != [2, 3]:
            raise ModelError(f"{self._where(node)}: only a mean over H and W of an image tensor is supported")
        keep = bool(a.get("keepdims", 1))
        t = self.k.layers.GlobalAveragePooling2D(keepdims=keep)(x.t)
        return Val(t, nchw=keep, nonneg=x.nonneg)

    def _pool(self, node, kind):
        k = self.k
        x = self.act(self.val(node.input[0]))
        a = _attrs(node)
        ks = tuple(int(v) for v in a["kernel_shape"])
        strides = tuple(int(v) for v in a.get("strides", [1] * len(ks)))
        dil = tuple(int(v) for v in a.get("dilations", [1, 1]))
        if len(ks) != 2 or dil != (1, 1):
            raise ModelError(f"{self._where(node)}: only 2-D pooling without dilation is supported")
        _, _, h, w = x.onnx_shape()
        padding, explicit = self.pads_for((h, w), ks, strides, a.get("pads"), _auto_pad(a))
        if a.get("ceil_mode", 0):
            p = explicit or ((0, 0), (0, 0))
            floor_hw = [(n + sum(pp) - kk) // s + 1 for n, pp, kk, s in zip((h, w), p, ks, strides)]
            ceil_hw = [math.ceil((n + sum(pp) - kk) / s) + 1 for n, pp, kk, s in zip((h, w), p, ks, strides)]
            if floor_hw != ceil_hw:
                raise ModelError(f"{self._where(node)}: ceil_mode pooling that changes the output size is "
                                 f"not supported")
        t = x.t
        if explicit is not None:
            if kind == "max":
                if x.nonneg:  # every value >= 0: zero padding never wins a max
                    t = k.layers.ZeroPadding2D(explicit)(t)
                elif all(v <= 1 for pair in explicit for v in pair):
                    # A window holding a padded cell also holds the edge cell it mirrors.
                    t = k.ops.pad(t, [[0, 0], list(explicit[0]), list(explicit[1]), [0, 0]], mode="symmetric")
                else:
                    raise ModelError(f"{self._where(node)}: max pooling with padding {explicit} on values that "
                                     f"may be negative is not supported")
            else:
                if not a.get("count_include_pad", 0):
                    raise ModelError(f"{self._where(node)}: padded average pooling that excludes the padding "
                                     f"from the count is not supported")
                t = k.layers.ZeroPadding2D(explicit)(t)
        layer = (k.layers.MaxPooling2D if kind == "max" else k.layers.AveragePooling2D)(
            pool_size=ks, strides=strides, padding=padding)
        return Val(layer(t), nchw=True, nonneg=x.nonneg)

    def op_MaxPool(self, node, idx, nodes):
        if len(node.output) > 1 and node.output[1]:
            raise ModelError(f"{self._where(node)}: MaxPool indices output is not supported")
        return self._pool(node, "max")

    def op_AveragePool(self, node, idx, nodes):
        return self._pool(node, "avg")

    def op_Pad(self, node, idx, nodes):
        x = self.act(self.val(node.input[0]))
        a = _attrs(node)
        mode = a.get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        pads = a.get("pads") if self.opset < 11 else self.const(node, 1, "pads")
        value = a.get("value", 0.0) if self.opset < 11 else self.opt_const(node, 2)
        value = 0.0 if value is None else float(np.asarray(value).reshape(-1)[0]) if np.size(value) else 0.0
        pads = [int(p) for p in pads]
        if not x.nchw or mode != "constant" or value != 0.0 or any(pads[i] for i in (0, 1, 4, 5)):
            raise ModelError(f"{self._where(node)}: only zero padding of H and W is supported")
        t = self.k.layers.ZeroPadding2D(((pads[2], pads[6]), (pads[3], pads[7])))(x.t)
        return Val(t, nchw=True, nonneg=x.nonneg)

    # -- flatten and linear layers

    def _flatten(self, x: Val) -> Val:
        k = self.k
        shape = x.onnx_shape()
        if len(shape) == 2:
            return x
        if x.nchw and len(shape) == 4:
            if shape[2:] == (1, 1):
                return Val(k.layers.Reshape((shape[1],))(x.t), nonneg=x.nonneg)
            # PyTorch flattens C,H,W: put the channels first again (a transpose inside the graph).
            self.inner_transposes += 1
            self.notes.append(f"flatten of a {shape[1]}x{shape[2]}x{shape[3]} map keeps PyTorch's C,H,W order "
                              f"with one TRANSPOSE inside the model")
            return Val(k.layers.Flatten()(k.layers.Permute((3, 1, 2))(x.t)), nonneg=x.nonneg)
        return Val(k.layers.Flatten()(x.t), nonneg=x.nonneg)

    def op_Flatten(self, node, idx, nodes):
        v = self.val(node.input[0])
        axis = int(_attrs(node).get("axis", 1))
        if v.const:
            return Val(v.t.reshape(int(np.prod(v.t.shape[:axis])), -1))
        if axis != 1:
            raise ModelError(f"{self._where(node)}: only Flatten(axis=1) is supported")
        return self._flatten(v)

    def op_Reshape(self, node, idx, nodes):
        v = self.val(node.input[0])
        target = [int(s) for s in self.const(node, 1, "shape")]
        if v.const:
            return Val(v.t.reshape([d if d != 0 else v.t.shape[i] for i, d in enumerate(target)]))
        shape = v.onnx_shape()
        resolved = [shape[i] if d == 0 else d for i, d in enumerate(target)]
        n = int(np.prod(shape))
        if -1 in resolved:
            known = int(np.prod([d for d in resolved if d != -1]))
            resolved[resolved.index(-1)] = n // known
        if len(resolved) == 2 and resolved[0] == 1 and resolved[1] == n // 1:
            return self._flatten(v)
        if list(resolved) == list(shape):
            return v
        raise ModelError(f"{self._where(node)}: reshape {list(shape)} -> {target} is not supported (only "
                         f"flattening to [1, features])")

    def op_Transpose(self, node, idx, nodes):
        v = self.act(self.val(node.input[0]))
        perm = [int(p) for p in _attrs(node).get("perm", [])]
        # The N,H,W,C <-> N,C,H,W transposes of an NHWC model are free: the Keras tensor stays NHWC.
        if not v.nchw and len(v.onnx_shape()) == 4 and perm == [0, 3, 1, 2]:
            return Val(v.t, nchw=True, nonneg=v.nonneg)
        if v.nchw and perm == [0, 2, 3, 1]:
            return Val(v.t, nchw=False, nonneg=v.nonneg)
        raise ModelError(f"{self._where(node)}: transpose {perm} is not supported")

    def op_Gemm(self, node, idx, nodes):
        x = self._flatten(self.act(self.val(node.input[0])))
        a = _attrs(node)
        if a.get("transA", 0):
            raise ModelError(f"{self._where(node)}: transA is not supported")
        w = self.const(node, 1, "weights").astype(np.float32)
        w = (w.T if a.get("transB", 0) else w) * float(a.get("alpha", 1.0))
        c = self.opt_const(node, 2)
        b = np.zeros(w.shape[1], np.float32) if c is None else (
            np.broadcast_to(c.astype(np.float32).reshape(-1), (w.shape[1],)) * float(a.get("beta", 1.0)))
        return self._dense(x, w, b)

    def op_MatMul(self, node, idx, nodes):
        x = self._flatten(self.act(self.val(node.input[0])))
        w = self.const(node, 1, "weights").astype(np.float32)
        if w.ndim != 2:
            raise ModelError(f"{self._where(node)}: only [features, units] constant MatMul is supported")
        return self._dense(x, w, np.zeros(w.shape[1], np.float32))

    def _dense(self, x: Val, w: np.ndarray, b: np.ndarray) -> Val:
        layer = self.k.layers.Dense(w.shape[1])
        layer.build(x.t.shape)
        layer.set_weights([w, np.ascontiguousarray(b, dtype=np.float32)])
        return Val(layer(x.t))


def _auto_pad(a: dict) -> str:
    v = a.get("auto_pad", b"NOTSET")
    return v.decode() if isinstance(v, bytes) else str(v)


def _fold_bn(w, b, scale, bias, mean, var, eps):
    """Conv weights and bias with the following batch norm folded in (eval mode)."""
    a = scale.astype(np.float32) / np.sqrt(var.astype(np.float32) + np.float32(eps))
    return w * a.reshape(-1, 1, 1, 1), (b - mean) * a + bias


def supported_ops() -> list[str]:
    """ONNX op types the import handles."""
    return sorted(n[3:] for n in dir(_Builder) if n.startswith("op_"))


def build_keras(model, layout: str = "nchw", size: tuple[int, int] | None = None) -> KerasGraph:
    """Build the NHWC Keras equivalent of an ONNX classifier.

    Args:
        model: an ``onnx.ModelProto`` (:func:`load_onnx`).
        layout: the ONNX input's layout, "nchw" (PyTorch) or "nhwc" (e.g. tf2onnx).
        size: (width, height) for a model whose input size is dynamic; must match a fixed one.

    Returns:
        The Keras model (batch 1, input H x W x 3, one [1, classes] output) and what was done.

    Raises:
        ModelError: an unsupported op or graph shape, in one line.
        UsageError: ``size`` missing for a dynamic input or contradicting a fixed one.
    """
    if layout not in ("nchw", "nhwc"):
        raise UsageError(f"--layout must be nchw or nhwc, not {layout}")
    name, h, w, _ = input_info(model, layout)
    if h is None or w is None:
        if size is None:
            raise UsageError(f"the ONNX input '{name}' has no fixed height/width: give --input WxH")
        w, h = size
    elif size is not None and tuple(size) != (w, h):
        raise UsageError(f"--input {size[0]}x{size[1]} does not match the ONNX model's input {w}x{h}")
    return _Builder(model, layout, int(h), int(w)).build(name)
