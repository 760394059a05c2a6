"""Synthetic mask crops for the mask classifier (issue 21 items 4 and 5), placed by face landmarks.

The dataroots training crops are VGGFace2 faces with mostly light mask
templates pasted on; real doorways also see black, navy and printed masks, and
masks worn wrongly (nose out, or only over the mouth and chin), of which the
training pool holds only 65 real crops. This module pastes the dataroots mask
templates onto the *unmasked* dataroots training crops (``train/not_masked``),
placed with YuNet's five landmarks (eyes, nose tip, mouth corners) as the
MaskTheFace-style placement of seed 003 does:

- ``mask_incorrect``: the mask's top edge below the nose tip (``below_nose``:
  between the nose tip and the mouth, the mask slipped down) or below the mouth
  (``chin``: only the chin covered); the nose tip is never covered;
- ``mask`` (dark / patterned): the top edge on the nose bridge (between the
  eyes and the nose tip), the bottom past the chin, with a dark template
  (``black*.png``, or a light one recoloured black/navy/charcoal/maroon/bottle
  green) or a light one printed with a seeded pattern (stripes, checks, dots,
  blotches); the shading of the template is kept.

The incorrect kind uses every style too (half the templates as they are, a
quarter dark, a quarter patterned) so that colour does not tell the classes
apart. Every random choice comes from ``numpy.random.default_rng([seed, i])``
for the i-th output, the sources are a seeded permutation of the sorted file
list, and the result is cached in a work folder under a key of (counts, seed,
source list, templates, version): a rerun reuses it. Only the training crops of
``train/not_masked`` are used, never a validation photo.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from edge.errors import DataError

log = logging.getLogger(__name__)

VERSION = 1

#: what ``synth=True`` adds to the default mask classifier's pool
DEFAULT_COUNTS: dict[str, int] = {"mask_incorrect": 1200, "mask_dark": 600, "mask_patterned": 600}

#: YuNet landmark order: right eye, left eye, nose tip, right mouth corner, left mouth corner
#: (the person's right: the left of the image for a frontal face).
R_EYE, L_EYE, NOSE, R_MOUTH, L_MOUTH = range(5)

KINDS = ("correct", "below_nose", "chin")

#: longer side (px) of the crops ``synthesize(small=...)`` writes small: the faces of crowded photos
SMALL_PX = (10, 40)

#: where a ``below_nose`` mask's top edge sits by default: this share of the way from nose tip to mouth
NOSE_GAP = (0.25, 0.55)

# Dark recolours (RGB), each a fabric seen on doorways: black, navy, charcoal, maroon, bottle green.
DARK_COLOURS = [(18, 18, 20), (22, 28, 62), (48, 48, 52), (70, 16, 24), (16, 48, 30)]


@dataclass(frozen=True)
class Template:
    """An RGBA mask template cropped to its opaque bounding box.

    ``top``/``bottom``: the first and last opaque rows of the centre column
    (the mask body's top and bottom edge at the nose line, ear loops aside).
    """

    name: str
    rgba: np.ndarray
    top: int
    bottom: int

    @property
    def dark(self) -> bool:
        rgb, a = self.rgba[..., :3], self.rgba[..., 3] > 127
        return float(np.median(rgb[a].max(axis=1))) < 80


def load_template(path: Path | str) -> Template:
    """Read an RGBA template (PNG with alpha), crop it to its opaque box.

    Raises:
        DataError: unreadable, no alpha channel, or empty.
    """
    path = Path(path)
    im = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if im is None or im.ndim != 3 or im.shape[2] != 4:
        raise DataError(f"{path}: not an RGBA PNG mask template")
    rgba = np.concatenate([im[..., 2::-1], im[..., 3:]], axis=2)
    return template_from_rgba(path.stem, rgba)


def template_from_rgba(name: str, rgba: np.ndarray) -> Template:
    """A Template from an RGBA uint8 array (cropped to its opaque box)."""
    a = rgba[..., 3] > 127
    ys, xs = np.nonzero(a)
    if not len(ys):
        raise DataError(f"mask template {name} is fully transparent")
    rgba = np.ascontiguousarray(rgba[ys.min():ys.max() + 1, xs.min():xs.max() + 1])
    col = np.nonzero(rgba[:, rgba.shape[1] // 2, 3] > 127)[0]
    top, bottom = (int(col.min()), int(col.max())) if len(col) else (0, rgba.shape[0] - 1)
    # Work on at most 512 px wide copies: the 2083 px templates only slow the warp down.
    s = min(1.0, 512 / rgba.shape[1])
    if s < 1.0:
        rgba = cv2.resize(rgba, (max(2, round(rgba.shape[1] * s)), max(2, round(rgba.shape[0] * s))),
                          interpolation=cv2.INTER_AREA)
        top, bottom = int(top * s), int(bottom * s)
    return Template(name, rgba, top, max(bottom, top + 1))


# ---------------------------------------------------------------- styles


def _shading(rgba: np.ndarray) -> np.ndarray:
    """The template's folds and edges as a 0..1.2 gain around 1 (luminance / its median)."""
    lum = cv2.cvtColor(np.ascontiguousarray(rgba[..., :3]), cv2.COLOR_RGB2GRAY).astype(np.float32)
    med = float(np.median(lum[rgba[..., 3] > 127])) or 1.0
    return np.clip(lum / med, 0.4, 1.25)[..., None]


def _pattern(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A seeded printed-fabric pattern, H x W x 3 float RGB."""
    c1, c2 = rng.integers(0, 256, 3).astype(np.float32), rng.integers(0, 256, 3).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    period = rng.uniform(0.06, 0.2) * w
    kind = int(rng.integers(0, 4))
    if kind == 0:  # stripes at a random angle
        t = np.deg2rad(rng.uniform(0, 180))
        sel = (np.cos(t) * xx + np.sin(t) * yy) % period < period / 2
    elif kind == 1:  # checks
        sel = ((xx // (period / 2)) + (yy // (period / 2))) % 2 == 0
    elif kind == 2:  # dots
        r = period * rng.uniform(0.15, 0.3)
        sel = ((xx % period - period / 2) ** 2 + (yy % period - period / 2) ** 2) < r * r
    else:  # blotches (camouflage / floral print)
        noise = rng.random((max(2, int(h / period * 2)), max(2, int(w / period * 2)))).astype(np.float32)
        noise = cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)
        sel = noise > 0.5
    return np.where(sel[..., None], c1, c2)


def styled(t: Template, style: str, rng: np.random.Generator) -> np.ndarray:
    """The template's RGBA in ``style``: ``as_is``, ``dark`` or ``patterned`` (shading kept)."""
    if style == "as_is" or (style == "dark" and t.dark):
        return t.rgba
    h, w = t.rgba.shape[:2]
    shade = _shading(t.rgba)
    if style == "dark":
        base = np.asarray(DARK_COLOURS[int(rng.integers(len(DARK_COLOURS)))], np.float32)
        base = base * rng.uniform(0.8, 1.25)
        rgb = base[None, None, :] * shade
    elif style == "patterned":
        rgb = _pattern(h, w, rng) * shade
    else:
        raise ValueError(f"unknown style {style!r}")
    out = t.rgba.copy()
    out[..., :3] = np.clip(rgb, 0, 255).astype(np.uint8)
    return out


# ---------------------------------------------------------------- placement


def mask_geometry(lm: np.ndarray, kind: str, rng: np.random.Generator,
                  nose_gap: tuple[float, float] = NOSE_GAP) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where the mask goes: (top centre, bottom centre, half-width vector), in image pixels.

    The face's down axis runs from the eye centre to the mouth centre; the
    chin is estimated 0.8 eye-mouth distances below the mouth. ``correct``: top
    on the nose bridge (25-45% of the way from the eyes to the nose tip);
    ``below_nose``: top ``nose_gap`` (default 25-55%) of the way from the nose tip to
    the mouth (the nose tip stays uncovered); ``chin``: top 15-45% of the way from the mouth to
    the chin (mouth and nose uncovered).
    """
    lm = np.asarray(lm, np.float64).reshape(5, 2)
    eye = (lm[R_EYE] + lm[L_EYE]) / 2
    mouth = (lm[R_MOUTH] + lm[L_MOUTH]) / 2
    nose = lm[NOSE]
    down = mouth - eye
    d = float(np.hypot(*down))
    if d < 1e-6:
        raise DataError("degenerate landmarks: eyes and mouth at the same point")
    down /= d
    across = np.array([-down[1], down[0]])  # image-right for an upright face
    chin = mouth + 0.8 * d * down
    # Face width from the eyes and mouth corners (the larger copes with some yaw).
    width = max(float(np.hypot(*(lm[L_EYE] - lm[R_EYE]))) * 2.4,
                float(np.hypot(*(lm[L_MOUTH] - lm[R_MOUTH]))) * 3.2) * rng.uniform(0.95, 1.12)
    # Nose position along the down axis, from the eye centre.
    n_along = float(np.dot(nose - eye, down))
    if kind == "correct":
        top = eye + rng.uniform(0.25, 0.45) * n_along * down
        bottom = chin + rng.uniform(0.0, 0.15) * d * down
    elif kind == "below_nose":
        m_along = float(np.dot(mouth - eye, down))
        top = eye + (n_along + rng.uniform(*nose_gap) * (m_along - n_along)) * down
        bottom = chin + rng.uniform(0.1, 0.3) * d * down
    elif kind == "chin":
        top = mouth + rng.uniform(0.15, 0.45) * 0.8 * d * down
        bottom = chin + rng.uniform(0.2, 0.4) * d * down
    else:
        raise ValueError(f"unknown kind {kind!r}; one of {KINDS}")
    # The mask sits on the nose line, not the eye line: centre it between nose and mouth centre sideways.
    shift = float(np.dot((nose + mouth) / 2 - eye, across))
    top, bottom = top + shift * across, bottom + shift * across
    return top, bottom, across * width / 2


def place_mask(face: np.ndarray, lm: np.ndarray, rgba: np.ndarray, top_row: int, bottom_row: int,
               kind: str, rng: np.random.Generator,
               nose_gap: tuple[float, float] = NOSE_GAP) -> tuple[np.ndarray, np.ndarray]:
    """Paste one template onto an RGB face crop, placed by its five landmarks.

    The template's centre-column top/bottom rows map to the geometry's top and
    bottom centre, its left/right edge to top centre -/+ the half width.

    Returns:
        (RGB uint8 image, the pasted alpha 0..1 as H x W float32).
    """
    top, bottom, half = mask_geometry(lm, kind, rng, nose_gap)
    th, tw = rgba.shape[:2]
    src = np.float32([[0, top_row], [tw - 1, top_row], [(tw - 1) / 2, bottom_row]])
    dst = np.float32([top - half, top + half, bottom])
    m = cv2.getAffineTransform(src, dst)
    h, w = face.shape[:2]
    warped = cv2.warpAffine(rgba, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                            borderValue=(0, 0, 0, 0))
    alpha = warped[..., 3:].astype(np.float32) / 255.0
    if min(h, w) >= 48:  # soften the cut-out edge a little, as a camera would
        alpha = cv2.GaussianBlur(alpha, (3, 3), 0)[..., None]
    # Match the mask to the face's light: a mask in a dim photo is dim too.
    face_lum = float(face.mean()) / 255.0
    gain = np.clip(0.55 + 0.6 * face_lum, 0.7, 1.05) * rng.uniform(0.9, 1.05)
    rgb = warped[..., :3].astype(np.float32) * gain
    out = face.astype(np.float32) * (1 - alpha) + rgb * alpha
    return np.clip(out, 0, 255).astype(np.uint8), alpha[..., 0]


def placement_ok(alpha: np.ndarray, lm: np.ndarray, kind: str, min_cover: float = 0.12) -> bool:
    """Does a pasted mask show what its label says?

    At least ``min_cover`` of the crop is mask (a mask pushed out of a tight crop
    would make an unmasked face labelled masked); ``correct`` covers the nose tip
    and the mouth; the incorrect kinds leave the nose tip uncovered (``chin``
    also the mouth).
    """
    h, w = alpha.shape

    def at(p) -> float:
        x, y = int(round(p[0])), int(round(p[1]))
        return float(alpha[y, x]) if 0 <= x < w and 0 <= y < h else 0.0

    lm = np.asarray(lm).reshape(5, 2)
    mouth = (lm[R_MOUTH] + lm[L_MOUTH]) / 2
    if float(alpha.mean()) < min_cover:
        return False
    if kind == "correct":
        return at(lm[NOSE]) > 0.5 and at(mouth) > 0.5
    if kind == "below_nose":
        return at(lm[NOSE]) < 0.05 and at(mouth) > 0.5
    return at(lm[NOSE]) < 0.05 and at(mouth) < 0.05


# ---------------------------------------------------------------- landmarks


class YuNetLandmarks:
    """Five landmarks of the most central face of a small crop, with cv2.FaceDetectorYN.

    The crop is padded by a quarter of its size (edge-replicated) and resized to
    ``size`` so that YuNet, trained on whole photos, sees a face with context.
    """

    def __init__(self, onnx: Path | str, size: int = 192, score: float = 0.5):
        if not Path(onnx).is_file():
            raise DataError(f"YuNet model not found: {onnx}")
        self.size = size
        self.det = cv2.FaceDetectorYN.create(str(onnx), "", (size, size), score, 0.3, 20)

    def __call__(self, rgb: np.ndarray) -> np.ndarray | None:
        h, w = rgb.shape[:2]
        p = int(0.25 * max(h, w))
        big = cv2.copyMakeBorder(rgb[..., ::-1], p, p, p, p, cv2.BORDER_REPLICATE)
        fx, fy = big.shape[1] / self.size, big.shape[0] / self.size
        big = cv2.resize(big, (self.size, self.size))
        _, faces = self.det.detect(np.ascontiguousarray(big))
        if faces is None or not len(faces):
            return None
        centre = np.array([self.size / 2, self.size / 2])
        best = min(faces, key=lambda f: np.hypot(*(f[:2] + f[2:4] / 2 - centre)))
        lm = best[4:14].reshape(5, 2).astype(np.float64)
        lm[:, 0] = lm[:, 0] * fx - p
        lm[:, 1] = lm[:, 1] * fy - p
        return lm


def yunet_path(shared: Path | str) -> Path:
    peers = Path(shared) / "models" / "peers"
    for name in ("yunet_n_320_320.onnx", "yunet_n_640_640.onnx"):
        if (peers / name).is_file():
            return peers / name
    raise DataError(f"no YuNet model in {peers} (yunet_n_320_320.onnx): needed to place synthetic masks")


# ---------------------------------------------------------------- the synthetic set


def _plan(counts: dict[str, int]) -> list[tuple[str, str, str]]:
    """(output label, kind, style) for every output, in order."""
    plan: list[tuple[str, str, str]] = []
    n_inc = counts.get("mask_incorrect", 0)
    for i in range(n_inc):
        kind = "below_nose" if i % 10 < 7 else "chin"
        style = ("as_is", "as_is", "dark", "patterned")[i % 4]
        plan.append(("mask_incorrect", kind, style))
    plan += [("mask", "correct", "dark")] * counts.get("mask_dark", 0)
    plan += [("mask", "correct", "patterned")] * counts.get("mask_patterned", 0)
    return plan


def synthesize(sources: Sequence[Path], templates: Sequence[Path | Template], out: Path | str, *,
               counts: dict[str, int] | None = None, seed: int = 0,
               landmarks: Callable[[np.ndarray], np.ndarray | None] | None = None,
               landmark_model: Path | str | None = None, small: float = 0.0,
               small_px: tuple[int, int] = SMALL_PX, nose_gap: tuple[float, float] = NOSE_GAP) -> dict:
    """Write the synthetic crops under ``out/<key>/<label>/`` (cached) and return the notes.

    Args:
        sources: unmasked face crops (dataroots ``train/not_masked``).
        templates: RGBA mask templates (paths or loaded).
        out: work folder (the cache lives here).
        counts: {"mask_incorrect": n, "mask_dark": n, "mask_patterned": n} (default DEFAULT_COUNTS).
        seed: every random choice derives from it.
        landmarks: rgb -> 5x2 landmarks or None (default YuNet from ``landmark_model``).
        small: the share of crops written at a doorway face's size: scaled down (INTER_AREA) so
            the longer side is ``small_px`` (drawn per crop) and saved at that size, as
            ``write_crops`` saves the small faces of crowded photos (real ``mask_incorrect``
            faces of facemask853 train: median 27 px); 0: every crop at the source's size.
        nose_gap: where a ``below_nose`` mask's top edge sits, as a share of the way from the nose
            tip to the mouth (default 25-55%; facemask853's incorrect masks mostly sit just under
            the nose tip).

    Returns:
        {"folder", "files": {label: [paths]}, "made": {...}, "no_face": n, "key"}.

    Raises:
        DataError: no sources or templates, or no landmark model.
    """
    counts = dict(DEFAULT_COUNTS if counts is None else counts)
    sources = sorted(Path(s) for s in sources)
    if not sources:
        raise DataError("no unmasked source crops to synthesize masks on")
    tpls = [t if isinstance(t, Template) else load_template(t) for t in templates]
    if not tpls:
        raise DataError("no mask templates")
    if not 0.0 <= small <= 1.0:
        raise DataError(f"masksynth small share must be within [0, 1], got {small}")
    if not 0.0 <= nose_gap[0] <= nose_gap[1] <= 1.0:
        raise DataError(f"masksynth nose_gap must be 0 <= LOW <= HIGH <= 1, got {nose_gap}")
    extra_key = {"small": small, "small_px": list(small_px)} if small else {}
    if tuple(nose_gap) != NOSE_GAP:
        extra_key["nose_gap"] = list(nose_gap)
    key_src = json.dumps({"v": VERSION, "counts": counts, "seed": seed, **extra_key,
                          "sources": [s.name for s in sources],
                          "templates": [[t.name, hashlib.sha256(t.rgba.tobytes()).hexdigest()[:12]] for t in tpls]},
                         sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
    folder = Path(out) / f"masksynth-{key}"
    done = folder / "done.json"
    if done.is_file():
        notes = json.loads(done.read_text())
        notes["files"] = {lab: [folder / f for f in fs] for lab, fs in notes["files"].items()}
        log.info("synthetic mask crops: reusing %s", folder)
        return notes
    if landmarks is None:
        if landmark_model is None:
            raise DataError("synthesize needs landmarks= or landmark_model= (YuNet .onnx)")
        landmarks = YuNetLandmarks(landmark_model)
    plan = _plan(counts)
    order = np.random.default_rng([seed, 21]).permutation(len(sources))
    light = [t for t in tpls if not t.dark]
    dark = [t for t in tpls if t.dark]
    files: dict[str, list[str]] = {}
    made: dict[str, int] = {}
    no_face = 0
    lm_cache: dict[int, np.ndarray | None] = {}
    rejected = 0
    j = 0
    for i, (label, kind, style) in enumerate(plan):
        rng = np.random.default_rng([seed, i, 3])
        # Dark: the black templates as they are 40% of the time, else a light one recoloured.
        if style == "dark" and dark and rng.random() < 0.4:
            t = dark[int(rng.integers(len(dark)))]
        else:
            pick = light or tpls
            t = pick[int(rng.integers(len(pick)))]
        rgba = styled(t, style, rng)
        # Next source whose landmarks give a placement that shows what the label says
        # (sources cycle when the plan is longer than the list).
        for _ in range(len(sources)):
            si = int(order[j % len(sources)])
            j += 1
            if si not in lm_cache:
                img = cv2.imread(str(sources[si]), cv2.IMREAD_COLOR)
                lm_cache[si] = None if img is None else landmarks(img[..., ::-1].copy())
                no_face += lm_cache[si] is None
            if lm_cache[si] is None:
                continue
            face = cv2.imread(str(sources[si]), cv2.IMREAD_COLOR)[..., ::-1]
            img, alpha = place_mask(face, lm_cache[si], rgba, t.top, t.bottom, kind, rng, nose_gap)
            if placement_ok(alpha, lm_cache[si], kind):
                break
            rejected += 1
        else:
            raise DataError("no source crop took a mask as planned: cannot synthesize")
        tag = ""
        # Drawn last so small=0 leaves every other draw (and the crops) as before.
        if small and rng.random() < small:
            side = int(rng.integers(small_px[0], small_px[1] + 1))
            f = side / max(img.shape[:2])
            img = cv2.resize(img, (max(1, round(img.shape[1] * f)), max(1, round(img.shape[0] * f))),
                             interpolation=cv2.INTER_AREA)
            tag = f"_s{side}"
        name = f"{label}/{i:05d}_{kind}_{style}_{t.name}{tag}_{sources[si].stem}.jpg"
        (folder / label).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / name), img[..., ::-1].copy(), [cv2.IMWRITE_JPEG_QUALITY, 95])
        files.setdefault(label, []).append(name)
        made_tag = f"{label}:{kind}:{style}" + (":small" if tag else "")
        made[made_tag] = made.get(made_tag, 0) + 1
    notes = {"key": key, "made": made, "no_face_sources_skipped": no_face,
             "placements_rejected": rejected, "sources": len(sources),
             "templates": [t.name for t in tpls], "seed": seed, "version": VERSION, **extra_key,
             "files": files}
    done.write_text(json.dumps(notes, indent=1))
    notes["files"] = {lab: [folder / f for f in fs] for lab, fs in files.items()}
    notes["folder"] = str(folder)
    return notes


def default_synth(shared: Path | str, work: Path | str, counts: dict[str, int] | None = None,
                  seed: int = 0, small: float = 0.0, nose_gap: tuple[float, float] = NOSE_GAP) -> dict:
    """The default classifier's synthetic crops: dataroots train/not_masked x dataroots mask-templates
    (``small``: the share written at a doorway face's size; ``nose_gap``: see ``synthesize``)."""
    dr = Path(shared) / "data" / "dataroots"
    sources = sorted(p for p in (dr / "train" / "not_masked").iterdir() if p.is_file())
    templates = sorted((dr / "mask-templates").glob("*.png"))
    return synthesize(sources, templates, Path(work), counts=counts, seed=seed,
                      landmark_model=yunet_path(shared), small=small, nose_gap=nose_gap)


# ---------------------------------------------------------------- before/after measurement


def _set_items(shared: Path) -> dict[str, list]:
    from convert.data import dataset

    fm = shared / "data" / "facemask853"
    dr = shared / "data" / "dataroots"
    return {"facemask853_val": dataset.voc_items(fm, fm / "val.txt"),
            "dataroots_real_val": dataset.dataroots_items(dr / "validation_metadata.csv")}


def classifier_figures(y: list[str], pred: list[str], colour: list[str | None]) -> dict:
    """accuracy, tnr/fnr (violation = no_mask or mask_incorrect), per-class recall and precision,
    and recall / fnr of masked faces per mask colour group."""
    viol = {"no_mask", "mask_incorrect"}
    n = len(y)
    out: dict = {"faces": n, "accuracy": round(sum(a == b for a, b in zip(y, pred)) / max(n, 1), 4)}
    bad = [p in viol for t, p in zip(y, pred) if t in viol]
    good = [p in viol for t, p in zip(y, pred) if t == "mask"]
    out["tnr"] = round(sum(bad) / len(bad), 4) if bad else None
    out["fnr"] = round(sum(good) / len(good), 4) if good else None
    for lab in ("mask", "no_mask", "mask_incorrect"):
        tp = sum(t == lab and p == lab for t, p in zip(y, pred))
        nt, npred = sum(t == lab for t in y), sum(p == lab for p in pred)
        out[f"recall_{lab}"] = round(tp / nt, 4) if nt else None
        out[f"precision_{lab}"] = round(tp / npred, 4) if npred else None
        out[f"support_{lab}"] = nt
    for group in ("dark", "light", "colourful"):
        g = [p in viol for t, p, c in zip(y, pred, colour) if t == "mask" and c == group]
        out[f"masked_{group}"] = len(g)
        out[f"fnr_{group}"] = round(sum(g) / len(g), 4) if g else None
    return out


def compare_classifiers(manifests: dict[str, Path | str], shared: Path | str,
                        conditions: Sequence[str] | None = None, threads: int = 2) -> list[dict]:
    """Classifier-only figures of each model on the card's sets, clean and under each doorway condition.

    Every true face box of facemask853 ``val.txt`` and of the dataroots real
    validation photos is cut from the (transformed) photo with the runtime's
    ``crop_with_margin`` and classified through ``edge.infer.models.Classifier``
    (int8, argmax: no threshold anywhere); mask colour groups by
    ``convert.verify.conditions.mask_colour`` on the clean photo.

    Returns:
        One row per (model, set, condition) with ``classifier_figures``.
    """
    from edge.infer.models import Classifier
    from edge.types import Box

    from convert.verify import conditions as cond
    from convert.data.dataset import DEFAULT_LABEL_MAP
    from convert.data.images import read_rgb

    shared = Path(shared)
    names = ["clean", *(conditions if conditions is not None else cond.CONDITIONS)]
    models = {k: Classifier(v, num_threads=threads) for k, v in manifests.items()}
    rows = []
    for set_name, items in _set_items(shared).items():
        acc = {(m, c): ([], [], []) for m in models for c in names}
        for path, lboxes in items:
            lboxes = [lb for lb in lboxes if DEFAULT_LABEL_MAP.get(lb.name)]
            if not lboxes:
                continue
            rgb = read_rgb(path)
            colours = [cond.mask_colour(rgb, lb.box) if DEFAULT_LABEL_MAP[lb.name] == "mask" else None
                       for lb in lboxes]
            for c in names:
                if c == "clean":
                    img, s = rgb, 1.0
                else:
                    fn, s = cond.CONDITIONS[c]
                    img = fn(rgb, [lb.box for lb in lboxes], path.name)
                for lb, colour in zip(lboxes, colours):
                    b = lb.box
                    box = Box(b.x1 * s, b.y1 * s, b.x2 * s, b.y2 * s)
                    if box.width < 1 or box.height < 1:
                        continue
                    for m, clf in models.items():
                        crop = clf.crop(img, box)
                        if crop.size == 0:
                            continue
                        ys, ps, cs = acc[(m, c)]
                        ys.append(DEFAULT_LABEL_MAP[lb.name])
                        ps.append(clf.classify(crop).label)
                        cs.append(colour)
        for (m, c), (ys, ps, cs) in acc.items():
            rows.append({"model": m, "set": set_name, "condition": c, **classifier_figures(ys, ps, cs)})
    return rows


def _fmt(v) -> str:
    return "n/a" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


def comparison_table(rows: list[dict]) -> str:
    """Markdown table of ``compare_classifiers`` rows, models side by side per set and condition."""
    cols = ["accuracy", "tnr", "fnr", "recall_mask_incorrect", "precision_mask_incorrect", "masked_dark", "fnr_dark",
            "fnr_colourful", "recall_no_mask"]
    lines = ["| set | condition | model | faces | " + " | ".join(cols) + " |",
             "|---|---|---|---|" + "---|" * len(cols)]
    for r in rows:
        lines.append(f"| {r['set']} | {r['condition']} | {r['model']} | {r['faces']} | "
                     + " | ".join(_fmt(r.get(k)) for k in cols) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m convert.train.masksynth compare NAME=M.json ... --json OUT`` (before/after table)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m convert.train.masksynth")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compare", help="classifier-only figures of models on the card's sets and conditions")
    c.add_argument("models", nargs="+", metavar="NAME=M.json")
    c.add_argument("--shared", default="../shared")
    c.add_argument("--json", required=True)
    c.add_argument("--conditions", help="comma-separated (default: all of convert.verify.conditions)")
    a = p.parse_args(argv)
    manifests = dict(m.split("=", 1) for m in a.models)
    conds = a.conditions.split(",") if a.conditions else None
    rows = compare_classifiers(manifests, a.shared, conds)
    Path(a.json).write_text(json.dumps(rows, indent=1))
    print(comparison_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
