"""Small darknet networks for tests: cfg texts and a writer for random-weight files."""

from __future__ import annotations

from pathlib import Path

from convert.parse import darknet

# Every layer type and option the converter implements: BN/no-BN conv, leaky/relu/
# swish/logistic/linear, symmetric stride-2 padding, depthwise and grouped conv,
# shortcut, SE block (avgpool + scale_channels), 2x2/2 and 2x2/1 maxpool, route
# with groups, route of several layers, upsample, two yolo heads.
ALL_LAYERS_CFG = """\
[net]
# training options are ignored
batch=64
width=48
height=32
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=16
size=3
stride=2
pad=1
activation=relu

[convolutional]
batch_normalize=1
filters=16
size=3
groups=16
stride=1
pad=1
activation=relu

[convolutional]
batch_normalize=1
filters=8
size=1
groups=2
stride=1
pad=1
activation=swish

[convolutional]
batch_normalize=1
filters=16
size=1
stride=1
pad=1
activation=linear

[shortcut]
from=-4
activation=linear

[avgpool]

[convolutional]
filters=4
size=1
stride=1
activation=relu

[convolutional]
filters=16
size=1
stride=1
activation=logistic

[scale_channels]
from=-4

[maxpool]
size=2
stride=2

[maxpool]
size=2
stride=1

[convolutional]
batch_normalize=1
filters=32
size=3
stride=1
pad=1
activation=leaky

[route]
layers=-1
groups=2
group_id=1

[convolutional]
size=1
stride=1
pad=1
filters=14
activation=linear

[yolo]
mask = 3,4
anchors = 4,6,  8,10,  12,16,  20,24,  30,40
classes=2
num=5
jitter=.3
scale_x_y=1.05

[route]
layers = -4

[upsample]
stride=2

[route]
layers = -1, 9

[convolutional]
size=1
stride=1
pad=1
filters=21
activation=linear

[yolo]
mask = 0,1,2
anchors = 4,6,  8,10,  12,16,  20,24,  30,40
classes=2
num=5
"""

# The yolov3-tiny pattern: maxpool 2x2/2 on an odd map (darknet pads right/bottom).
ODD_POOL_CFG = """\
[net]
width=50
height=30
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=2
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
size=1
stride=1
pad=1
filters=12
activation=linear

[yolo]
mask=0,1
anchors=10,14, 23,27
classes=1
num=2
"""


def conv_section(filters: int, size: int = 1, stride: int = 1, act: str = "leaky", bn: bool = True,
                 groups: int | None = None) -> str:
    """One ``[convolutional]`` section (pad=1)."""
    return (f"[convolutional]\n{'batch_normalize=1' if bn else ''}\nfilters={filters}\nsize={size}\n"
            + (f"groups={groups}\n" if groups else "") + f"stride={stride}\npad=1\nactivation={act}\n")


def yolo_section(mask: str, anchors: str, classes: int, num: int, extra: str = "") -> str:
    """One ``[yolo]`` head section."""
    return f"[yolo]\nmask = {mask}\nanchors = {anchors}\nclasses={classes}\nnum={num}\n{extra}"


# One class, two heads (stride 8 and 16), BN convs: a tiny yoloface-like net.
_TINY_ANCHORS = "8,8,  16,16,  24,24,  40,40"
TINY_CFG = "\n".join([
    "[net]\nwidth=64\nheight=48\nchannels=3\n",
    conv_section(8, 3, 2), conv_section(8, 3, 2, "relu", groups=8), conv_section(16, 3, 2),
    conv_section(12, act="linear", bn=False), yolo_section("0,1", _TINY_ANCHORS, 1, 4),
    "[route]\nlayers = -3\n",
    conv_section(16, 3, 2), conv_section(12, act="linear", bn=False), yolo_section("2,3", _TINY_ANCHORS, 1, 4),
])


def write_model(tmp_path: Path, cfg_text: str, seed: int = 0, version=(0, 2, 0), name: str = "m"):
    """Write cfg + random weights; returns (cfg path, weights path, network, weights)."""
    cfg = tmp_path / f"{name}.cfg"
    cfg.write_text(cfg_text)
    net = darknet.load_network(cfg)
    w = darknet.random_weights(net, seed)
    weights = tmp_path / f"{name}.weights"
    darknet.write_weights(weights, net, w, version=version)
    return cfg, weights, net, w


def yolov3_style_cfg(width: int = 64, height: int = 64, classes: int = 2) -> str:
    """A narrow yolov3.cfg: Darknet-53 pattern (stride-2 convs, residual blocks with
    shortcut from=-3), three heads joined by route -4 / upsample / route -1,<absolute>."""
    out = [f"[net]\nwidth={width}\nheight={height}\nchannels=3\n"]
    n = 0  # darknet layer index of the next section

    def add(text: str) -> int:
        nonlocal n
        out.append(text)
        n += 1
        return n - 1

    def conv(f: int, size: int = 1, stride: int = 1, act: str = "leaky", bn: bool = True) -> int:
        return add(conv_section(f, size, stride, act, bn))

    conv(4, 3)
    skips = []
    for f, blocks in ((8, 1), (8, 1), (8, 2), (16, 2), (16, 1)):
        conv(f, 3, 2)
        for _ in range(blocks):
            conv(f // 2, 1)
            conv(f, 3)
            add("[shortcut]\nfrom=-3\nactivation=linear\n")
        skips.append(n - 1)
    heads = 3 * (5 + classes)
    mask = ["6,7,8", "3,4,5", "0,1,2"]
    anchors = "10,13, 16,30, 33,23, 30,61, 62,45, 59,119, 116,90, 156,198, 373,326"
    for k, skip in enumerate((None, skips[3], skips[2])):
        if skip is not None:
            add("[route]\nlayers = -4\n")
            conv(8, 1)
            add("[upsample]\nstride=2\n")
            add(f"[route]\nlayers = -1, {skip}\n")
        conv(8, 1)
        conv(16, 3)
        conv(8, 1)
        conv(16, 3)
        conv(heads, 1, act="linear", bn=False)
        add(yolo_section(mask[k], anchors, classes, 9, "jitter=.3\nignore_thresh = .7\ntruth_thresh = 1\nrandom=1\n"))
    return "\n".join(out)
