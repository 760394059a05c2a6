"""Darknet cfg/weights -> a faithful Keras functional model.

Three stages, each usable on its own:

- ``parse_cfg``: the cfg file as sections with line numbers (darknet's own
  tokenising: whitespace removed, ``#``/``;`` comments, first duplicate wins);
  ``read_names``: the ``.names`` file, one class a line.
- ``plan_network``: checks every section and option against what this
  converter implements and computes each layer's output shape. Anything it
  does not implement is a one-line ``DataError`` naming the section and line.
- ``read_weights`` / ``write_weights``: the binary weights file (header, then
  float32 per convolutional layer). A file that does not fit the cfg is refused
  whole, naming the layer where it ran out or the bytes left over.
- ``build_keras``: the Keras model, one raw output per yolo head (the conv
  output feeding the yolo layer, NHWC), BatchNorm folded into the conv.

``opencv_heads`` runs the same darknet files through OpenCV's independent
importer (``cv2.dnn.readNetFromDarknet``, OpenCV 4.x) for parity checks.

TensorFlow/Keras are imported inside the functions that need them.
"""

from __future__ import annotations

import logging
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import DataError

log = logging.getLogger(__name__)

# darknet normalize_cpu / OpenCV's darknet importer: x_hat = (x - mean) / sqrt(var + 1e-6)
BN_EPSILON = 1e-6
LEAKY_SLOPE = 0.1

SECTION_ALIASES = {
    "net": "net", "network": "net",
    "convolutional": "convolutional", "conv": "convolutional",
    "maxpool": "maxpool", "max": "maxpool",
    "avgpool": "avgpool", "avg": "avgpool",
    "route": "route",
    "shortcut": "shortcut",
    "upsample": "upsample",
    "scale_channels": "scale_channels",
    "yolo": "yolo",
}

ACTIVATIONS = ("linear", "leaky", "relu", "logistic", "swish")

# Options that only steer training; they do not change the inference graph.
_YOLO_TRAINING = {
    "jitter", "ignore_thresh", "truth_thresh", "random", "iou_thresh", "cls_normalizer",
    "iou_normalizer", "obj_normalizer", "iou_loss", "nms_kind", "beta_nms", "max_delta",
    "counters_per_class", "label_smooth_eps", "resize", "focal_loss", "max", "uc_normalizer",
    "delta_normalizer", "objectness_smooth", "iou_thresh_kind", "beta1", "track_history_size",
    "sim_thresh", "dets_for_track", "dets_for_show", "track_ciou_norm", "embedding_layer",
    "map", "rescore", "show_details",
}
_ALLOWED = {
    "convolutional": {"filters", "size", "stride", "pad", "padding", "groups", "batch_normalize",
                      "activation", "dilation", "stride_x", "stride_y"},
    "maxpool": {"size", "stride", "padding", "stride_x", "stride_y"},
    "avgpool": set(),
    "route": {"layers", "groups", "group_id"},
    "shortcut": {"from", "activation", "weights_type", "weights_normalization"},
    "upsample": {"stride", "scale"},
    "scale_channels": {"from", "activation", "scale_wh"},
    "yolo": {"mask", "anchors", "classes", "num", "scale_x_y", "new_coords"} | _YOLO_TRAINING,
}


@dataclass(frozen=True)
class Section:
    """One ``[section]`` of a cfg file with its options and their line numbers."""

    kind: str
    line: int
    options: dict[str, str]
    option_lines: dict[str, int]

    def where(self, key: str | None = None) -> str:
        line = self.option_lines.get(key, self.line) if key else self.line
        return f"[{self.kind}] at line {line}"


def parse_cfg(path: Path | str) -> list[Section]:
    """Read a darknet cfg into sections (darknet's tokenising rules).

    Raises:
        DataError: missing/unreadable file, an option before the first section,
            a line that is neither a section nor ``key=value``, no ``[net]`` first.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except FileNotFoundError:
        raise DataError(f"cfg file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cfg file {path} is unreadable: {e}") from e
    sections: list[Section] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        # darknet strips every whitespace character, even inside the line.
        line = re.sub(r"\s+", "", raw)
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            if not line.endswith("]") or len(line) < 3:
                raise DataError(f"{path}:{n}: malformed section header {raw.strip()!r}")
            sections.append(Section(line[1:-1].lower(), n, {}, {}))
            continue
        if "=" not in line:
            raise DataError(f"{path}:{n}: expected key=value or [section], got {raw.strip()!r}")
        if not sections:
            raise DataError(f"{path}:{n}: option {raw.strip()!r} before the first [section]")
        key, value = line.split("=", 1)
        sec = sections[-1]
        if key in sec.options:
            # darknet's option_find returns the first occurrence.
            log.warning("%s:%d: duplicate option %s in %s; darknet uses the first", path, n, key,
                        sec.where())
            continue
        sec.options[key] = value
        sec.option_lines[key] = n
    if not sections:
        raise DataError(f"{path}: no sections; not a darknet cfg file")
    if SECTION_ALIASES.get(sections[0].kind) != "net":
        raise DataError(f"{path}: first section is {sections[0].where()}, expected [net]")
    return sections


# ---------------------------------------------------------------------------
# Network plan: validated layers with output shapes


@dataclass
class Layer:
    """One darknet layer (index as darknet counts it: [net] excluded)."""

    index: int
    kind: str
    line: int
    out_shape: tuple[int, int, int]  # H, W, C
    params: dict[str, Any] = field(default_factory=dict)
    inputs: list[int] = field(default_factory=list)  # absolute layer indices; -1 = network input

    @property
    def where(self) -> str:
        return f"layer {self.index} [{self.kind}] (cfg line {self.line})"


@dataclass(frozen=True)
class YoloHead:
    """One yolo layer: the conv layer that feeds it and its decoding constants."""

    yolo_index: int
    conv_index: int
    grid: tuple[int, int]  # H, W
    stride: int
    anchors: list[list[float]]  # [w, h] of this head's masked anchors, input pixels
    mask: list[int]
    classes: int
    scale_x_y: float


@dataclass
class Network:
    """A validated darknet network: input size, layers, yolo heads."""

    width: int
    height: int
    channels: int
    layers: list[Layer]
    heads: list[YoloHead]
    cfg_path: str = ""

    @property
    def conv_layers(self) -> list[Layer]:
        return [lay for lay in self.layers if lay.kind == "convolutional"]

    def weight_counts(self, layer: Layer) -> list[tuple[str, int]]:
        """(name, float count) of one conv layer's arrays, in file order."""
        p = layer.params
        n, k = p["filters"], p["size"]
        in_c = self.layers[layer.inputs[0]].out_shape[2] if layer.inputs[0] >= 0 else self.channels
        w = n * (in_c // p["groups"]) * k * k
        if p["batch_normalize"]:
            return [("biases", n), ("scales", n), ("mean", n), ("variance", n), ("weights", w)]
        return [("biases", n), ("weights", w)]


def _int(sec: Section, key: str, default: int | None = None) -> int:
    if key not in sec.options:
        if default is None:
            raise DataError(f"missing option {key} in {sec.where()}")
        return default
    try:
        return int(sec.options[key])
    except ValueError:
        raise DataError(f"option {key}={sec.options[key]} in {sec.where(key)} is not an integer") from None


def _float(sec: Section, key: str, default: float) -> float:
    if key not in sec.options:
        return default
    try:
        return float(sec.options[key])
    except ValueError:
        raise DataError(f"option {key}={sec.options[key]} in {sec.where(key)} is not a number") from None


def _ints(sec: Section, key: str) -> list[int]:
    try:
        return [int(v) for v in sec.options[key].split(",") if v != ""]
    except ValueError:
        raise DataError(f"option {key}={sec.options[key]} in {sec.where(key)} is not a list of integers") from None


def _floats(sec: Section, key: str) -> list[float]:
    try:
        return [float(v) for v in sec.options[key].split(",") if v != ""]
    except ValueError:
        raise DataError(f"option {key}={sec.options[key]} in {sec.where(key)} is not a list of numbers") from None


def _activation(sec: Section, default: str = "linear") -> str:
    act = sec.options.get("activation", default).lower()
    if act not in ACTIVATIONS:
        raise DataError(f"unsupported activation {act} in {sec.where('activation')} "
                        f"(supported: {', '.join(ACTIVATIONS)})")
    return act


def _resolve(sec: Section, index: int, ref: int, count: int) -> int:
    """darknet layer reference: negative = relative to this layer, else absolute."""
    absolute = index + ref if ref < 0 else ref
    if not 0 <= absolute < index:
        raise DataError(f"{sec.where()}: layer reference {ref} points outside layers 0..{index - 1}")
    return absolute


def plan_network(sections: list[Section], input_size: tuple[int, int] | None = None,
                 cfg_path: str = "") -> Network:
    """Validate sections and compute every layer's output shape.

    Args:
        sections: from ``parse_cfg``.
        input_size: (width, height) overriding the cfg's [net] size.

    Raises:
        DataError: an unsupported section/option/value, or shapes that do not fit.
    """
    net = sections[0]
    width, height = _int(net, "width", 0), _int(net, "height", 0)
    channels = _int(net, "channels", 3)
    if input_size is not None:
        width, height = input_size
    if width <= 0 or height <= 0:
        raise DataError(f"{net.where()}: width/height missing or not positive")
    layers: list[Layer] = []
    heads: list[YoloHead] = []

    def shape_of(i: int) -> tuple[int, int, int]:
        return layers[i].out_shape if i >= 0 else (height, width, channels)

    for sec in sections[1:]:
        kind = SECTION_ALIASES.get(sec.kind)
        index = len(layers)
        if kind is None or kind == "net":
            raise DataError(f"unsupported section [{sec.kind}] at line {sec.line} (layer {index})")
        for key in sec.options:
            if key not in _ALLOWED[kind]:
                raise DataError(f"unsupported option {key} in {sec.where(key)}")
        prev = index - 1
        h, w, c = shape_of(prev)
        params: dict[str, Any] = {}
        inputs = [prev]
        if kind == "convolutional":
            n = _int(sec, "filters", 1)
            size = _int(sec, "size", 1)
            stride = _int(sec, "stride", 1)
            if _int(sec, "stride_x", stride) != stride or _int(sec, "stride_y", stride) != stride:
                raise DataError(f"unsupported unequal stride_x/stride_y in {sec.where()}")
            if _int(sec, "dilation", 1) != 1:
                raise DataError(f"unsupported option dilation != 1 in {sec.where('dilation')}")
            pad = size // 2 if _int(sec, "pad", 0) else _int(sec, "padding", 0)
            groups = _int(sec, "groups", 1)
            if n <= 0 or size <= 0 or stride <= 0 or pad < 0 or groups <= 0:
                raise DataError(f"{sec.where()}: filters/size/stride/groups must be positive")
            if c % groups or n % groups:
                raise DataError(f"{sec.where()}: groups={groups} does not divide input channels {c} "
                                f"and filters {n}")
            oh, ow = (h + 2 * pad - size) // stride + 1, (w + 2 * pad - size) // stride + 1
            params = dict(filters=n, size=size, stride=stride, pad=pad, groups=groups,
                          batch_normalize=bool(_int(sec, "batch_normalize", 0)),
                          activation=_activation(sec, "logistic"))
            out = (oh, ow, n)
        elif kind == "maxpool":
            stride = _int(sec, "stride", 1)
            if _int(sec, "stride_x", stride) != stride or _int(sec, "stride_y", stride) != stride:
                raise DataError(f"unsupported unequal stride_x/stride_y in {sec.where()}")
            size = _int(sec, "size", stride)
            padding = _int(sec, "padding", size - 1)
            if size <= 0 or stride <= 0 or padding < 0:
                raise DataError(f"{sec.where()}: size/stride must be positive")
            oh, ow = (h + padding - size) // stride + 1, (w + padding - size) // stride + 1
            # darknet starts window i at i*stride - padding//2 and ignores cells outside
            # the map; TF pooling ignores its padding too, so a TF mode matches when it
            # gives the same output size and the same leading offset in both dimensions.
            def tf_geometry(mode: str, n: int) -> tuple[int, int]:
                if mode == "valid":
                    return (n - size) // stride + 1, 0
                o = -(-n // stride)
                return o, max((o - 1) * stride + size - n, 0) // 2

            want = [(oh, padding // 2), (ow, padding // 2)]
            mode = next((m for m in ("valid", "same")
                         if [tf_geometry(m, h), tf_geometry(m, w)] == want), None)
            params = dict(size=size, stride=stride, mode=mode)
            out = (oh, ow, c)
        elif kind == "avgpool":
            out = (1, 1, c)
        elif kind == "route":
            if "layers" not in sec.options:
                raise DataError(f"missing option layers in {sec.where()}")
            refs = [_resolve(sec, index, r, len(layers)) for r in _ints(sec, "layers")]
            if not refs:
                raise DataError(f"empty layers in {sec.where('layers')}")
            shapes = [shape_of(r) for r in refs]
            if len({s[:2] for s in shapes}) != 1:
                raise DataError(f"{sec.where()}: routed layers {refs} have different sizes "
                                f"{[s[:2] for s in shapes]} (input size not a multiple of the strides?)")
            groups, gid = _int(sec, "groups", 1), _int(sec, "group_id", 0)
            total = sum(s[2] for s in shapes)
            if groups <= 0 or total % groups or not 0 <= gid < groups:
                raise DataError(f"{sec.where()}: groups={groups} group_id={gid} do not split {total} channels")
            inputs = refs
            params = dict(groups=groups, group_id=gid)
            out = (shapes[0][0], shapes[0][1], total // groups)
        elif kind == "shortcut":
            if "from" not in sec.options:
                raise DataError(f"missing option from in {sec.where()}")
            refs = [_resolve(sec, index, r, len(layers)) for r in _ints(sec, "from")]
            if len(refs) != 1:
                raise DataError(f"unsupported shortcut from several layers in {sec.where('from')}")
            if sec.options.get("weights_type", "none") != "none":
                raise DataError(f"unsupported weights_type in {sec.where('weights_type')}")
            if shape_of(refs[0]) != (h, w, c):
                raise DataError(f"{sec.where()}: shortcut adds {shape_of(refs[0])} to {(h, w, c)}; "
                                "only equal shapes are supported")
            inputs = [prev, refs[0]]
            params = dict(activation=_activation(sec))
            out = (h, w, c)
        elif kind == "scale_channels":
            if "from" not in sec.options:
                raise DataError(f"missing option from in {sec.where()}")
            ref = _resolve(sec, index, _int(sec, "from"), len(layers))
            if _int(sec, "scale_wh", 0) != 0:
                raise DataError(f"unsupported scale_wh in {sec.where('scale_wh')}")
            if _activation(sec) != "linear":
                raise DataError(f"unsupported activation in {sec.where('activation')} (linear only)")
            rh, rw, rc = shape_of(ref)
            if (h, w) != (1, 1) or c != rc:
                raise DataError(f"{sec.where()}: scales {(h, w, c)} must be 1x1x{rc} to scale layer {ref}")
            inputs = [ref, prev]
            out = (rh, rw, rc)
        elif kind == "upsample":
            stride = _int(sec, "stride", 2)
            if stride <= 0:
                raise DataError(f"unsupported upsample stride {stride} in {sec.where('stride')}")
            if _float(sec, "scale", 1.0) != 1.0:
                raise DataError(f"unsupported upsample scale in {sec.where('scale')}")
            params = dict(stride=stride)
            out = (h * stride, w * stride, c)
        else:  # yolo
            if _int(sec, "new_coords", 0) != 0:
                raise DataError(f"unsupported new_coords=1 in {sec.where('new_coords')}")
            classes = _int(sec, "classes", 20)
            num = _int(sec, "num", 1)
            mask = _ints(sec, "mask") if "mask" in sec.options else list(range(num))
            anchors = _floats(sec, "anchors") if "anchors" in sec.options else []
            if len(anchors) != 2 * num:
                raise DataError(f"{sec.where('anchors')}: {len(anchors)} anchor values for num={num}")
            if any(not 0 <= m < num for m in mask):
                raise DataError(f"{sec.where('mask')}: mask {mask} outside 0..{num - 1}")
            feeder = layers[prev] if prev >= 0 else None
            if feeder is None or feeder.kind != "convolutional" or feeder.params["activation"] != "linear":
                raise DataError(f"{sec.where()}: a yolo layer must follow a linear convolutional layer")
            if c != len(mask) * (5 + classes):
                raise DataError(f"{sec.where()}: the conv before it has {c} filters, expected "
                                f"{len(mask)} x (5 + {classes}) = {len(mask) * (5 + classes)}")
            heads.append(YoloHead(
                yolo_index=index, conv_index=prev, grid=(h, w), stride=round(width / w),
                anchors=[[anchors[2 * m], anchors[2 * m + 1]] for m in mask], mask=mask,
                classes=classes, scale_x_y=_float(sec, "scale_x_y", 1.0),
            ))
            out = (h, w, c)
        if min(out) <= 0:
            raise DataError(f"{sec.where()}: output size {out} is empty for input {width}x{height}")
        layers.append(Layer(index, kind, sec.line, out, params, inputs))
    if not heads:
        raise DataError(f"{cfg_path or 'cfg'}: no [yolo] layer; only YOLO detectors are supported")
    if len({h.classes for h in heads}) != 1:
        raise DataError(f"{cfg_path or 'cfg'}: yolo layers disagree on classes")
    return Network(width, height, channels, layers, heads, cfg_path)


def load_network(cfg: Path | str, input_size: tuple[int, int] | None = None) -> Network:
    """``parse_cfg`` + ``plan_network``."""
    return plan_network(parse_cfg(cfg), input_size, str(cfg))


def read_names(path: Path, classes: int | None = None) -> list[str]:
    """Class names of a darknet ``.names`` file, one per line (blank lines ignored).

    Args:
        path: the ``.names`` file.
        classes: the number of classes the cfg's yolo layers have, if known.

    Raises:
        DataError: the file is missing, unreadable or empty, or has another number of names
            than ``classes``.
    """
    try:
        names = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    except FileNotFoundError:
        raise DataError(f"names file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"names file {path} is unreadable: {e}") from e
    if not names:
        raise DataError(f"names file {path} is empty")
    if classes is not None and len(names) != classes:
        raise DataError(f"names file {path} has {len(names)} names but the cfg's yolo layers have "
                        f"classes={classes}")
    return names


# ---------------------------------------------------------------------------
# Weights file


@dataclass(frozen=True)
class WeightsHeader:
    major: int
    minor: int
    revision: int
    seen: int

    @property
    def size(self) -> int:
        return 12 + (8 if _seen_is_64bit(self.major, self.minor) else 4)


def _seen_is_64bit(major: int, minor: int) -> bool:
    # darknet parser.c load_weights_upto: size_t seen for versions >= 0.2.
    return (major * 10 + minor) >= 2 and major < 1000 and minor < 1000


def read_header(data: bytes, path: str = "weights") -> WeightsHeader:
    """Parse the weights header (major, minor, revision int32; seen int64/int32)."""
    if len(data) < 12:
        raise DataError(f"weights file {path} is only {len(data)} bytes: no darknet header")
    major, minor, revision = struct.unpack_from("<iii", data, 0)
    if _seen_is_64bit(major, minor):
        if len(data) < 20:
            raise DataError(f"weights file {path} is only {len(data)} bytes: truncated header")
        (seen,) = struct.unpack_from("<q", data, 12)
    else:
        if len(data) < 16:
            raise DataError(f"weights file {path} is only {len(data)} bytes: truncated header")
        (seen,) = struct.unpack_from("<i", data, 12)
    return WeightsHeader(major, minor, revision, seen)


ConvWeights = dict[str, np.ndarray]


def read_weights(path: Path | str, network: Network) -> tuple[WeightsHeader, dict[int, ConvWeights]]:
    """Read a darknet .weights file for a network, all or nothing.

    Returns:
        (header, {conv layer index: {"biases", ["scales", "mean", "variance"], "weights"}});
        "weights" has darknet's layout (filters, in_channels / groups, size, size).

    Raises:
        DataError: missing file, too short (naming the layer where it ran out)
            or too long (naming the bytes left over).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"weights file not found: {path}") from None
    except OSError as e:
        raise DataError(f"weights file {path} is unreadable: {e}") from e
    header = read_header(data, str(path))
    offset = header.size
    plan: list[tuple[Layer, str, int, int]] = []  # layer, array name, offset, count
    for layer in network.conv_layers:
        for name, count in network.weight_counts(layer):
            plan.append((layer, name, offset, count))
            offset += 4 * count
    if offset > len(data):
        for layer, name, start, count in plan:
            if start + 4 * count > len(data):
                need = offset - len(data)
                raise DataError(
                    f"weights file {path} ends inside {layer.where}, in its {name}: {need} bytes short "
                    f"of the {offset} the cfg needs (cfg/weights mismatch or truncated file)"
                )
    if offset < len(data):
        left = len(data) - offset
        raise DataError(
            f"weights file {path} has {left} bytes ({left // 4} floats) left over after the last "
            f"weighted layer ({network.conv_layers[-1].where if network.conv_layers else 'none'}): "
            f"cfg/weights mismatch"
        )
    out: dict[int, ConvWeights] = {}
    for layer, name, start, count in plan:
        arr = np.frombuffer(data, dtype="<f4", count=count, offset=start).astype(np.float32)
        if name == "weights":
            p = layer.params
            in_c = count // (p["filters"] * p["size"] ** 2)
            arr = arr.reshape(p["filters"], in_c, p["size"], p["size"])
        out.setdefault(layer.index, {})[name] = arr
    bad = [i for i, d in out.items() if not all(np.isfinite(a).all() for a in d.values())]
    if bad:
        raise DataError(f"weights file {path}: non-finite values in {network.layers[bad[0]].where}")
    return header, out


def random_weights(network: Network, seed: int = 0) -> dict[int, ConvWeights]:
    """Plausible random weights for a network (tests): He-scaled kernels, positive variances."""
    rng = np.random.default_rng(seed)
    out: dict[int, ConvWeights] = {}
    for layer in network.conv_layers:
        p = layer.params
        d: ConvWeights = {}
        for name, count in network.weight_counts(layer):
            if name == "weights":
                fan_in = count // p["filters"]
                a = rng.normal(0, np.sqrt(2.0 / fan_in), count)
                d[name] = a.astype(np.float32).reshape(p["filters"], -1, p["size"], p["size"])
            elif name == "variance":
                d[name] = rng.uniform(0.5, 2.0, count).astype(np.float32)
            elif name == "scales":
                d[name] = rng.uniform(0.5, 1.5, count).astype(np.float32)
            else:
                d[name] = rng.normal(0, 0.1, count).astype(np.float32)
        out[layer.index] = d
    return out


def write_weights(path: Path | str, network: Network, weights: dict[int, ConvWeights],
                  version: tuple[int, int, int] = (0, 2, 0), seen: int = 0) -> None:
    """Write a darknet .weights file (tests and tooling); inverse of ``read_weights``."""
    major, minor, revision = version
    parts = [struct.pack("<iii", major, minor, revision),
             struct.pack("<q" if _seen_is_64bit(major, minor) else "<i", seen)]
    for layer in network.conv_layers:
        for name, count in network.weight_counts(layer):
            arr = np.asarray(weights[layer.index][name], dtype="<f4").reshape(-1)
            if arr.size != count:
                raise ValueError(f"{layer.where}: {name} has {arr.size} values, expected {count}")
            parts.append(arr.tobytes())
    Path(path).write_bytes(b"".join(parts))


def fold_batchnorm(layer: Layer, w: ConvWeights) -> tuple[np.ndarray, np.ndarray]:
    """Conv kernel (darknet layout) and bias with BatchNorm folded in (float64 math)."""
    kernel = w["weights"].astype(np.float64)
    bias = w["biases"].astype(np.float64)
    if layer.params["batch_normalize"]:
        g = w["scales"].astype(np.float64) / np.sqrt(w["variance"].astype(np.float64) + BN_EPSILON)
        kernel = kernel * g[:, None, None, None]
        bias = bias - w["mean"].astype(np.float64) * g
    return kernel.astype(np.float32), bias.astype(np.float32)


# ---------------------------------------------------------------------------
# Keras model


def _keras_layers():
    """Custom layers, defined lazily so importing this module does not import keras."""
    import keras

    class Upsample(keras.layers.Layer):
        """darknet upsample: nearest neighbour; lowers to one RESIZE_NEAREST_NEIGHBOR."""

        def __init__(self, stride: int, **kw):
            super().__init__(**kw)
            self.stride = stride

        def call(self, x):
            h, w = x.shape[1], x.shape[2]
            return keras.ops.image.resize(x, (h * self.stride, w * self.stride), interpolation="nearest")

        def get_config(self):
            return {**super().get_config(), "stride": self.stride}

    class ChannelSlice(keras.layers.Layer):
        """route groups/group_id: one contiguous slice of the channels."""

        def __init__(self, start: int, stop: int, **kw):
            super().__init__(**kw)
            self.start, self.stop = start, stop

        def call(self, x):
            return x[..., self.start : self.stop]

        def get_config(self):
            return {**super().get_config(), "start": self.start, "stop": self.stop}

    class ScaleChannels(keras.layers.Layer):
        """scale_channels: feature map (H,W,C) times per-channel scales (1,1,C)."""

        def call(self, x, s):
            return x * s

    class ClipLogits(keras.layers.Layer):
        """Clamp raw head logits to [-limit, limit] (int8 model only, see build_keras)."""

        def __init__(self, limit: float, **kw):
            super().__init__(**kw)
            self.limit = float(limit)

        def call(self, x):
            return keras.ops.clip(x, -self.limit, self.limit)

        def get_config(self):
            return {**super().get_config(), "limit": self.limit}

    return keras, Upsample, ChannelSlice, ScaleChannels, ClipLogits


def _activation_layer(keras, act: str, name: str, dtype: str = "float32"):
    if act == "linear":
        return None
    if act == "leaky":
        return keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE, name=name, dtype=dtype)
    if act == "relu":
        return keras.layers.ReLU(name=name, dtype=dtype)
    if act == "logistic":
        return keras.layers.Activation("sigmoid", name=name, dtype=dtype)
    if act == "swish":
        return keras.layers.Activation("swish", name=name, dtype=dtype)
    raise DataError(f"unsupported activation {act}")


def build_keras(network: Network, weights: dict[int, ConvWeights], dtype: str = "float32",
                clip_heads: float | None = None):
    """Build the float Keras model: input 1 x H x W x C (RGB, 0..1), one output per yolo head.

    Outputs are the raw conv outputs feeding each yolo layer (NHWC), named
    ``head_<stride>`` (``head_<stride>_<n>`` if two heads share a stride),
    in cfg order. ``dtype="float64"`` builds the same graph in double precision
    (parity tests use it to separate graph errors from float32 rounding).

    ``clip_heads=L`` clamps each head to [-L, L] (for the int8 model). A head's
    int8 output has one scale for all its channels; darknet's objectness/class
    logits reach -30..+20 while the box channels stay within about +-3, so the
    raw range wastes most of the 256 levels. Beyond +-10 nothing decodes
    differently: sigmoid is within 5e-5 of 0 or 1, and exp(10) is a box 22000
    anchors wide (edge/infer/yolo.py clips tw/th at +-20 anyway).
    """
    keras, Upsample, ChannelSlice, ScaleChannels, ClipLogits = _keras_layers()
    inp = keras.Input(shape=(network.height, network.width, network.channels), batch_size=1, name="image", dtype=dtype)
    outs: list[Any] = []

    def t(i: int):
        return inp if i < 0 else outs[i]

    names = dict(zip((hd.conv_index for hd in network.heads), head_names(network)))
    for layer in network.layers:
        p, i = layer.params, layer.index
        x = t(layer.inputs[0])
        if layer.kind == "convolutional":
            kernel, bias = fold_batchnorm(layer, weights[i])
            in_c = x.shape[-1]
            n, k, s, pad, g = p["filters"], p["size"], p["stride"], p["pad"], p["groups"]
            if s == 1 and 2 * pad == k - 1:
                padding = "same"
            else:
                # darknet pads symmetrically (pad before and after); TF 'same' with stride 2
                # would pad only after, shifting the whole feature map.
                if pad:
                    x = keras.layers.ZeroPadding2D(pad, name=f"pad_{i}", dtype=dtype)(x)
                padding = "valid"
            name = names.get(i, f"conv_{i}")
            if g == 1:
                conv = keras.layers.Conv2D(n, k, s, padding, name=name, dtype=dtype)
                x = conv(x)
                conv.set_weights([kernel.transpose(2, 3, 1, 0), bias])
            elif g == in_c:
                # depthwise: darknet output o = c * mult + m, the same order as Keras.
                mult = n // g
                conv = keras.layers.DepthwiseConv2D(k, s, padding, depth_multiplier=mult, name=name, dtype=dtype)
                x = conv(x)
                conv.set_weights([kernel.reshape(g, mult, k, k).transpose(2, 3, 0, 1), bias])
            else:
                # general grouped conv as split + convs + concat: TFLite's grouped CONV_2D
                # is not supported by every runtime/delegate.
                ci, co = in_c // g, n // g
                parts = []
                for gi in range(g):
                    xs = ChannelSlice(gi * ci, (gi + 1) * ci, name=f"conv_{i}_in{gi}", dtype=dtype)(x)
                    conv = keras.layers.Conv2D(co, k, s, padding, name=f"conv_{i}_g{gi}", dtype=dtype)
                    parts.append(conv(xs))
                    conv.set_weights([kernel[gi * co : (gi + 1) * co].transpose(2, 3, 1, 0),
                                      bias[gi * co : (gi + 1) * co]])
                x = keras.layers.Concatenate(name=name, dtype=dtype)(parts)
            act = _activation_layer(keras, p["activation"], f"{p['activation']}_{i}", dtype)
            if act is not None:
                x = act(x)
        elif layer.kind == "maxpool":
            x = keras.layers.MaxPooling2D(p["size"], p["stride"], p["mode"], name=f"pool_{i}", dtype=dtype)(x)
        elif layer.kind == "avgpool":
            x = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"avgpool_{i}", dtype=dtype)(x)
        elif layer.kind == "route":
            srcs = [t(r) for r in layer.inputs]
            x = srcs[0] if len(srcs) == 1 else keras.layers.Concatenate(name=f"concat_{i}", dtype=dtype)(srcs)
            if p["groups"] > 1:
                part = layer.out_shape[2]
                x = ChannelSlice(p["group_id"] * part, (p["group_id"] + 1) * part, name=f"route_{i}", dtype=dtype)(x)
        elif layer.kind == "shortcut":
            x = keras.layers.Add(name=f"shortcut_{i}", dtype=dtype)([x, t(layer.inputs[1])])
            act = _activation_layer(keras, p["activation"], f"{p['activation']}_{i}", dtype)
            if act is not None:
                x = act(x)
        elif layer.kind == "scale_channels":
            x = ScaleChannels(name=f"scale_channels_{i}", dtype=dtype)(t(layer.inputs[0]), t(layer.inputs[1]))
        elif layer.kind == "upsample":
            x = Upsample(p["stride"], name=f"upsample_{i}", dtype=dtype)(x)
        elif layer.kind == "yolo":
            pass  # decoding happens in float on the host (edge/infer/yolo.py)
        outs.append(x)
    heads = [outs[hd.conv_index] for hd in network.heads]
    if clip_heads:
        heads = [ClipLogits(clip_heads, name=f"{n}_clip", dtype=dtype)(h)
                 for n, h in zip(head_names(network), heads)]
    return keras.Model(inp, heads, name="darknet")


def head_names(network: Network) -> list[str]:
    """Keras output names of the heads, in cfg order (see ``build_keras``)."""
    names: list[str] = []
    for hd in network.heads:
        name = f"head_{hd.stride}"
        if name in names:
            name = f"{name}_{hd.yolo_index}"
        names.append(name)
    return names


# ---------------------------------------------------------------------------
# OpenCV reference


def opencv_heads(cfg: Path | str, weights: Path | str, network: Network,
                 batch: np.ndarray) -> list[np.ndarray]:
    """Raw head outputs from OpenCV's darknet importer, NHWC, in cfg order.

    Args:
        batch: float32 N x H x W x C input (RGB, 0..1), as fed to the Keras model.

    Raises:
        DataError: OpenCV cannot read the files (or has no darknet importer).
    """
    import cv2

    if not hasattr(cv2, "dnn") or not hasattr(cv2.dnn, "readNetFromDarknet"):
        raise DataError(f"OpenCV {cv2.__version__} has no darknet importer (needs OpenCV 4.x)")
    try:
        net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    except cv2.error as e:
        raise DataError(f"OpenCV cannot read {cfg}: {str(e).strip().splitlines()[-1]}") from e
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    if hasattr(net, "enableWinograd"):
        # OpenCV >= 4.7 runs 3x3 convs with Winograd by default, which alone costs
        # ~1e-4 absolute on yolov3-tiny; the reference must be plain float32.
        net.enableWinograd(False)
    # OpenCV names each darknet layer's conv "conv_<darknet index>".
    names = [f"conv_{hd.conv_index}" for hd in network.heads]
    outs: list[list[np.ndarray]] = [[] for _ in names]
    for x in batch:
        net.setInput(np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32))
        res = net.forward(names)
        for j, r in enumerate(res):
            outs[j].append(np.asarray(r).transpose(0, 2, 3, 1))
    return [np.concatenate(o) for o in outs]
