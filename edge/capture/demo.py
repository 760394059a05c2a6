"""The built-in demo source: a synthetic doorway clip made at run time.

No file from ../shared and nothing downloaded: the person is the photo of
Grace Hopper that matplotlib ships as sample data (``grace_hopper.jpg``, a US
Navy photograph, public domain). The clip shows an empty doorway, then the
person walking in from the right, pausing in the doorway and leaving to the
left, twice:

1. unmasked (a violation under the default rules: ``no_mask``);
2. mirrored, with a light-blue surgical-style mask that this module draws onto
   the lower face (a polygon over nose, mouth and chin, pleats and ear loops,
   placed at fixed proportions of the known photo) - compliant (``mask``).

Frames get a little sensor noise and brightness drift so the tracker and the
voting see slightly different frames, as from a real camera.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import cv2
import numpy as np

from ..errors import SourceError

log = logging.getLogger(__name__)

WIDTH, HEIGHT = 640, 480
#: Face box in the 512 x 600 photo (pixels), measured once on the photo: the
#: mask polygon is placed relative to it.
PHOTO_FACE = (160, 130, 360, 345)

# Timeline in frames: empty doorway, then per appearance walk in / stand / walk out.
EMPTY, WALK, STAND = 5, 10, 25
APPEARANCES = (("unmasked", False), ("masked", True))


def load_photo() -> np.ndarray:
    """The public-domain Grace Hopper photo shipped by matplotlib, as RGB uint8.

    Raises:
        SourceError: matplotlib or its sample data is missing.
    """
    # Find the file without importing matplotlib (about 19 MiB of RSS on the Pi for one path).
    spec = importlib.util.find_spec("matplotlib")
    path = None
    for root in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(root) / "mpl-data" / "sample_data" / "grace_hopper.jpg"
        if candidate.is_file():
            path = candidate
            break
    if path is None:
        try:
            from matplotlib import cbook

            path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
        except Exception as e:  # ImportError, or sample data stripped by a distro package
            raise SourceError(f"demo needs matplotlib's sample photo grace_hopper.jpg: {e}") from e
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SourceError(f"demo cannot decode {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def draw_mask(photo: np.ndarray, face: tuple[int, int, int, int] = PHOTO_FACE) -> np.ndarray:
    """A copy of ``photo`` with a surgical-style mask over the lower part of ``face``.

    The polygon runs from just under the eyes (over the nose bridge) to under
    the chin and out to the cheeks, all as fractions of the face box, so the
    same code fits any face box (e.g. one a detector found).
    """
    x1, y1, x2, y2 = face
    w, h = x2 - x1, y2 - y1

    def pt(fx: float, fy: float) -> tuple[int, int]:
        return int(round(x1 + fx * w)), int(round(y1 + fy * h))

    outline = np.array([
        pt(0.04, 0.50), pt(0.27, 0.42), pt(0.50, 0.39), pt(0.73, 0.42), pt(0.96, 0.50),
        pt(0.99, 0.70), pt(0.88, 0.92), pt(0.68, 1.03), pt(0.50, 1.06), pt(0.32, 1.03),
        pt(0.12, 0.92), pt(0.01, 0.70),
    ], np.int32)
    out = photo.copy()
    # Ear loops first, so the mask body covers their ends.
    for a, b in ((pt(0.02, 0.55), pt(-0.02, 0.30)), (pt(0.02, 0.85), pt(-0.03, 0.45)),
                 (pt(0.98, 0.55), pt(1.02, 0.30)), (pt(0.98, 0.85), pt(1.03, 0.45))):
        cv2.line(out, a, b, (235, 240, 245), max(2, w // 80), cv2.LINE_AA)
    cv2.fillPoly(out, [outline], (150, 196, 226), cv2.LINE_AA)
    # Pleats: three darker horizontal folds with a light edge, as on a surgical mask.
    for fy in (0.58, 0.72, 0.86):
        a, b = pt(0.06, fy), pt(0.94, fy + 0.02)
        cv2.line(out, a, b, (112, 160, 196), max(2, w // 60), cv2.LINE_AA)
        cv2.line(out, (a[0], a[1] + 3), (b[0], b[1] + 3), (186, 220, 240), 1, cv2.LINE_AA)
    cv2.polylines(out, [outline], True, (120, 170, 205), 2, cv2.LINE_AA)
    # Nose wire along the top edge.
    cv2.line(out, pt(0.36, 0.42), pt(0.64, 0.42), (210, 225, 235), max(2, w // 70), cv2.LINE_AA)
    return out


def _background() -> np.ndarray:
    bg = np.empty((HEIGHT, WIDTH, 3), np.uint8)
    bg[:] = (196, 188, 170)  # wall
    bg[400:] = (120, 104, 90)  # floor
    cv2.rectangle(bg, (150, 30), (490, 420), (92, 70, 52), -1)  # door frame
    cv2.rectangle(bg, (170, 50), (470, 420), (226, 222, 212), -1)  # the open doorway (lit hall)
    cv2.rectangle(bg, (30, 200), (110, 260), (80, 80, 80), -1)  # a notice on the wall
    cv2.putText(bg, "MASKS", (38, 238), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (240, 240, 240), 2, cv2.LINE_AA)
    return bg


def _silhouette(h: int, w: int) -> np.ndarray:
    """Soft alpha of head and shoulders in the photo's coordinates (cuts away flag and wall)."""
    a = np.zeros((h, w), np.float32)
    cv2.ellipse(a, (int(w * 0.51), int(h * 0.36)), (int(w * 0.25), int(h * 0.30)), 0, 0, 360, 1.0, -1)
    body = np.array([[int(w * 0.30), int(h * 0.55)], [int(w * 0.72), int(h * 0.55)],
                     [w, int(h * 0.75)], [w, h], [0, h], [0, int(h * 0.75)]], np.int32)
    cv2.fillPoly(a, [body], 1.0)
    return cv2.GaussianBlur(a, (0, 0), 4)[..., None]


class DemoSource:
    """FrameSource of the synthetic doorway clip (finite; ``loop`` repeats it).

    Args:
        loop: start again after the last frame.
        scale: size of the person relative to the 600-pixel-high photo.
        seed: noise seed (the clip is the same on every run).
    """

    live = False
    name = "demo"

    def __init__(self, loop: bool = False, scale: float = 0.62, seed: int = 0):
        self.loop = loop
        self.scale = scale
        self.seed = seed
        self._people: list[tuple[np.ndarray, np.ndarray]] = []
        self._plan: list[tuple[int, float] | None] = []
        self._i = 0
        self._noise: list[tuple[np.ndarray, np.ndarray]] = []
        self._bg: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self._plan) if self._plan else self._plan_length()

    @staticmethod
    def _plan_length() -> int:
        return EMPTY + len(APPEARANCES) * (2 * WALK + STAND + EMPTY)

    def open(self) -> None:
        photo = load_photo()
        ph, pw = photo.shape[:2]
        size = (int(round(pw * self.scale)), int(round(ph * self.scale)))
        alpha = cv2.resize(_silhouette(ph, pw), size)[..., None]
        self._people = []
        for _, masked in APPEARANCES:
            img = draw_mask(photo) if masked else photo
            img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
            a = alpha
            if masked:  # the second visit is mirrored, so it is not the same picture twice
                img, a = img[:, ::-1], a[:, ::-1]
            self._people.append((np.ascontiguousarray(img), np.ascontiguousarray(a)))
        self._bg = _background()
        pw_s = size[0]
        stand_x = (WIDTH - pw_s) // 2
        right, left = WIDTH, -pw_s
        plan: list[tuple[int, float] | None] = [None] * EMPTY
        for k in range(len(APPEARANCES)):
            plan += [(k, right + (stand_x - right) * (i + 1) / WALK) for i in range(WALK)]
            plan += [(k, stand_x + 3 * np.sin(i / 3.0)) for i in range(STAND)]
            plan += [(k, stand_x + (left - stand_x) * (i + 1) / WALK) for i in range(WALK)]
            plan += [None] * EMPTY
        self._plan = plan
        self._i = 0
        rng = np.random.default_rng(self.seed)
        self._noise = []
        for _ in range(8):
            n = np.clip(rng.standard_normal((HEIGHT, WIDTH, 3), dtype=np.float32) * 3.0, -20, 20)
            self._noise.append((np.maximum(n, 0).astype(np.uint8), np.maximum(-n, 0).astype(np.uint8)))
        log.info("demo: %d frames of %dx%d: empty doorway, then %s", len(plan), WIDTH, HEIGHT,
                 ", then ".join(f"a person {name}" for name, _ in APPEARANCES))

    def appearance_at(self, index: int) -> str | None:
        """Which appearance ("unmasked"/"masked") frame ``index`` shows, None for an empty doorway."""
        step = self._plan[index % len(self._plan)]
        return None if step is None else APPEARANCES[step[0]][0]

    def render(self, index: int) -> np.ndarray:
        """Frame ``index`` of the clip (RGB uint8)."""
        if self._bg is None:
            raise SourceError("demo source is not open")
        frame = self._bg.copy()
        step = self._plan[index]
        if step is not None:
            k, x = step
            img, a = self._people[k]
            x = int(round(x))
            y = HEIGHT - img.shape[0] + 10
            fx1, fx2 = max(0, x), min(WIDTH, x + img.shape[1])
            if fx2 > fx1:
                sx1, sx2 = fx1 - x, fx2 - x
                region = frame[y:y + img.shape[0], fx1:fx2]
                aa = a[: region.shape[0], sx1:sx2]
                blend = region * (1 - aa) + img[: region.shape[0], sx1:sx2] * aa
                region[:] = blend.astype(np.uint8)
        # Brightness drift and sensor noise (a small pool of precomputed noise
        # frames keeps rendering cheap: the demo must not eat the CPU it measures).
        frame = cv2.convertScaleAbs(frame, alpha=1.0 + 0.04 * np.sin(index / 7.0))
        plus, minus = self._noise[index % len(self._noise)]
        return cv2.subtract(cv2.add(frame, plus), minus)

    def read(self) -> np.ndarray | None:
        if self._i >= len(self._plan):
            if not self.loop:
                return None
            self._i = 0
        frame = self.render(self._i)
        self._i += 1
        return frame

    def close(self) -> None:
        pass
