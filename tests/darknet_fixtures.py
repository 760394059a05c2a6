"""Small darknet networks for tests: cfg texts and a writer for random-weight files."""

from __future__ import annotations

from pathlib import Path

from convert import darknet

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


def write_model(tmp_path: Path, cfg_text: str, seed: int = 0, version=(0, 2, 0), name: str = "m"):
    """Write cfg + random weights; returns (cfg path, weights path, network, weights)."""
    cfg = tmp_path / f"{name}.cfg"
    cfg.write_text(cfg_text)
    net = darknet.load_network(cfg)
    w = darknet.random_weights(net, seed)
    weights = tmp_path / f"{name}.weights"
    darknet.write_weights(weights, net, w, version=version)
    return cfg, weights, net, w
