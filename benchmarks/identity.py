"""Identity ("me" / "not me") benchmark on VGGFace2 crops, split by photo, int8 embedder.

How an identity model is made here: a frozen int8 MobileNet v1 embedder (the
Coral ``mobilenet_v1_1.0_224_quant_embedding_extractor.tflite``, the same
backbone weights the mask classifier starts from) turns a face crop into a
1024-d vector; each household member gets a small head on top:

- ``centroid``: cosine similarity to the mean of the K enrolled embeddings
  (nothing to train: enrolling is K embeddings and a mean);
- ``logistic``: a logistic-regression head, me (K photos) against a pool of
  other people's faces (what ``doorguard train classifier`` does on a frozen
  backbone, with a 2-way softmax), its weights and output quantized as an int8
  TFLite head would be (per-tensor int8 weights, output steps of 1/256).

Protocol (``../shared/data/dataroots``; file names are ``n<person>_<photo>_<face>.jpg``):

- a *photo* is a file name: a ``sampled_face_images/`` file with the same name
  as a crop is the same photo, and the masked crops are other photos with a
  pasted mask. A photo is in enrollment or in test, never in both;
- ``sampled_face_images/`` are loose VGGFace2 images: they go through the face
  detector the Pi runs and the runtime's own crop (``crop_with_margin``);
  the dataroots crops are used as they are;
- people are split (seeded) into three disjoint groups: ``neg`` (the "others"
  the logistic head trains against), ``cal`` (picks the operating threshold:
  the lowest with at most ``--far`` false accepts of unmasked impostors) and
  ``test`` (the figures). In cal and test, each person with at least K + 2
  photos is "me" in turn: K random unmasked photos enroll, the person's other
  photos are the genuine tests (unmasked and masked apart), every image of the
  other people of the same group is an impostor test;
- one image, one decision: the device votes over several frames of a track
  (N of M), which this per-image figure does not credit.

Run (about 3 minutes on 2 x86 cores, embeddings cached in --work)::

    nice -n 10 python -m benchmarks.identity --out benchmarks/results/identity

Writes ``identity.json`` (every figure and curve), ``identity.md`` and
``identity_curve.png`` (when matplotlib imports) under --out.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATAROOTS = ROOT.parent / "shared" / "data" / "dataroots"
EMBEDDER = ROOT.parent / "shared" / "models" / "coral" / "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite"
DETECTOR = ROOT / "models" / "yoloface-500k-v2-facemask.json"
#: The crop margin the mask classifier and ``doorguard train classifier`` use.
CROP_MARGIN = 0.15

log = logging.getLogger("benchmarks.identity")

UNMASKED, MASKED = "unmasked", "masked"


@dataclass(frozen=True)
class Image:
    """One image of one photo of one person."""

    path: Path
    person: str
    photo: str
    masked: bool
    kind: str  # "crop" or "sampled"


@dataclass
class Dataset:
    """Images with their embeddings (rows of ``emb``, L2-normalized)."""

    images: list[Image]
    emb: np.ndarray
    by_person: dict[str, list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_person = {}
        for i, im in enumerate(self.images):
            self.by_person.setdefault(im.person, []).append(i)

    def photos(self, person: str) -> list[str]:
        return sorted({self.images[i].photo for i in self.by_person[person]})


def person_of(name: str) -> str:
    """``n000001_0021_01.jpg`` -> ``n000001``."""
    return name.split("_", 1)[0]


def scan(root: Path) -> list[Image]:
    """Every VGGFace2 image under a dataroots folder, labelled with person, photo and mask."""
    out = []
    for sub, masked in (("train/masked", True), ("train/not_masked", False),
                        ("validation/artificial/masked", True), ("validation/artificial/not_masked", False)):
        for p in sorted((root / sub).glob("n*.jpg")):
            out.append(Image(p, person_of(p.name), p.stem, masked, "crop"))
    for p in sorted((root / "sampled_face_images").glob("n*.jpg")):
        out.append(Image(p, person_of(p.name), p.stem, False, "sampled"))
    return out


class CoralEmbedder:
    """Face crop -> L2-normalized embedding through an int8 (uint8) TFLite embedder."""

    def __init__(self, path: Path, num_threads: int = 1):
        from edge.manifest import InputSpec, QuantParams
        from edge.infer.runtime import TfliteModel

        self.model = TfliteModel(path, num_threads)
        shape = [int(v) for v in self.model.input["shape"]]
        scale, zp = self.model.input["quantization"]
        # Coral's uint8 MobileNet: real = pixel / 128 - 1 (scale 1/128, zero point 128); the
        # int8 ones made here (identity_embedder, train classifier): pixel / 127.5 - 1.
        dtype = np.dtype(self.model.input["dtype"]).name
        self.spec = InputSpec(width=shape[2], height=shape[1], resize="stretch",
                              scale=1 / 128 if dtype == "uint8" else 1 / 127.5,
                              mean=[1.0, 1.0, 1.0], dtype=dtype,
                              quant=QuantParams(scale=float(scale), zero_point=int(zp)))
        (self.out_name,) = self.model.outputs

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        from edge.infer.preprocess import prepare

        tensor, _ = prepare(rgb, self.spec)
        v = self.model.run(tensor)[self.out_name].reshape(-1).astype(np.float32)
        return v / max(float(np.linalg.norm(v)), 1e-9)


def detector_crop(detector) -> Callable[[np.ndarray], np.ndarray | None]:
    """The Pi's path from a photo to a face crop: detector, largest face, ``crop_with_margin``."""
    from edge.infer.preprocess import crop_with_margin

    def crop(rgb: np.ndarray) -> np.ndarray | None:
        faces = [d for d in detector.detect(rgb) if d.label.casefold() == "face"]
        if not faces:
            return None
        best = max(faces, key=lambda d: d.box.width * d.box.height)
        return crop_with_margin(rgb, best.box, CROP_MARGIN)

    return crop


def embed_all(images: Sequence[Image], embed: Callable[[np.ndarray], np.ndarray],
              crop: Callable[[np.ndarray], np.ndarray | None] | None, cache: Path | None) -> Dataset:
    """Embed every image (sampled photos through ``crop``; dropped when it finds no face)."""
    import cv2

    key = None
    if cache is not None:
        key = str(len(images)) + ":" + str(images[0].path) + ":" + str(images[-1].path)
        if cache.exists():
            z = np.load(cache, allow_pickle=False)
            if str(z["key"]) == key:
                keep = set(z["kept"].tolist())
                return Dataset([im for i, im in enumerate(images) if i in keep], z["emb"])
    kept, vecs = [], []
    t0 = time.perf_counter()
    for i, im in enumerate(images):
        bgr = cv2.imread(str(im.path), cv2.IMREAD_COLOR)
        if bgr is None:
            continue
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        if im.kind == "sampled" and crop is not None:
            rgb = crop(rgb)
            if rgb is None:
                continue
        vecs.append(embed(rgb))
        kept.append(i)
        if (i + 1) % 1000 == 0:
            log.info("embedded %d/%d images (%.0f s)", i + 1, len(images), time.perf_counter() - t0)
    emb = np.stack(vecs).astype(np.float32)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, key=key, kept=np.array(kept), emb=emb)
    return Dataset([images[i] for i in kept], emb)


# ---- heads ----------------------------------------------------------------------------------


def centroid_head(enroll: np.ndarray, negatives: np.ndarray | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """Cosine similarity to the mean enrolled embedding."""
    c = enroll.mean(axis=0)
    c = c / max(float(np.linalg.norm(c)), 1e-9)
    return lambda x: x @ c


def fit_logistic(pos: np.ndarray, neg: np.ndarray, l2: float = 1e-3, steps: int = 200,
                 lr: float = 2.0) -> tuple[np.ndarray, float]:
    """Class-balanced L2 logistic regression by full-batch gradient descent (numpy only, float32)."""
    x = np.concatenate([pos, neg]).astype(np.float32)
    y = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))]).astype(np.float32)
    sw = np.where(y == 1, 0.5 / len(pos), 0.5 / len(neg)).astype(np.float32)
    # Centre on the data mean: the features are non-negative (after ReLU), so the bias and
    # the weights would otherwise fight each other and gradient descent would crawl.
    mu = x.mean(axis=0)
    xc = x - mu
    w = np.zeros(x.shape[1], np.float32)
    b = np.float32(0.0)
    lr_, l2_ = np.float32(lr), np.float32(l2)
    for _ in range(steps):
        z = np.clip(xc @ w + b, -30, 30)
        p = 1.0 / (1.0 + np.exp(-z))
        g = sw * (p - y)
        w -= lr_ * (g @ xc + l2_ * w)
        b -= lr_ * g.sum()
    return w.astype(np.float64), float(b - mu @ w)


def quantized_logistic(w: np.ndarray, b: float) -> Callable[[np.ndarray], np.ndarray]:
    """The head as an int8 TFLite would run it: int8 weights (per tensor), probability in 1/256 steps."""
    s = max(float(np.abs(w).max()), 1e-12) / 127.0
    wq = np.clip(np.round(w / s), -127, 127) * s

    def score(x: np.ndarray) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ wq + b, -30, 30)))
        return np.round(p * 256.0).clip(0, 255) / 256.0

    return score


def logistic_head(enroll: np.ndarray, negatives: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    return quantized_logistic(*fit_logistic(enroll, negatives))


HEADS: dict[str, Callable[..., Callable[[np.ndarray], np.ndarray]]] = {
    "centroid": centroid_head,
    "logistic": logistic_head,
}


# ---- protocol -------------------------------------------------------------------------------


def split_people(people: Sequence[str], seed: int, n_neg: int, n_cal: int) -> dict[str, list[str]]:
    """Seeded, disjoint groups of people: neg, cal, test (the rest)."""
    order = sorted(people)
    np.random.default_rng(seed).shuffle(order)
    return {"neg": sorted(order[:n_neg]), "cal": sorted(order[n_neg:n_neg + n_cal]),
            "test": sorted(order[n_neg + n_cal:])}


@dataclass
class Scores:
    """Pooled scores of one group, one K, one head; per-person genuine lists for spread."""

    genuine: dict[str, list[float]] = field(default_factory=lambda: {UNMASKED: [], MASKED: []})
    impostor: dict[str, list[float]] = field(default_factory=lambda: {UNMASKED: [], MASKED: []})
    per_person: list[dict] = field(default_factory=list)
    people: int = 0


def score_group(ds: Dataset, group: Sequence[str], neg_idx: np.ndarray, k: int, head: str, seed: int,
                max_impostors: int | None = None, max_people: int | None = None) -> Scores:
    """Each eligible person of ``group`` as "me" in turn (see the module docstring)."""
    rng = np.random.default_rng(seed)
    masked = np.array([im.masked for im in ds.images])
    out = Scores()
    group_idx = np.array([i for p in group for i in ds.by_person[p]])
    group_person = np.array([ds.images[i].person for i in group_idx])
    negatives = ds.emb[neg_idx]
    for person in group:
        photos = ds.photos(person)
        idx = ds.by_person[person]
        unmasked_photos = sorted({ds.images[i].photo for i in idx if not ds.images[i].masked})
        if len(photos) < k + 2 or len(unmasked_photos) < k:
            continue
        if max_people is not None and out.people >= max_people:
            break
        enroll_photos = set(rng.choice(unmasked_photos, size=k, replace=False).tolist())
        enroll = [i for i in idx if ds.images[i].photo in enroll_photos and not ds.images[i].masked]
        genuine = np.array([i for i in idx if ds.images[i].photo not in enroll_photos])
        if not len(genuine):
            continue
        imp = group_idx[group_person != person]
        if max_impostors is not None and len(imp) > max_impostors:
            imp = rng.choice(imp, size=max_impostors, replace=False)
        score = HEADS[head](ds.emb[enroll], negatives)
        g, s_imp = score(ds.emb[genuine]), score(ds.emb[imp])
        for kind, sel_g, sel_i in ((UNMASKED, ~masked[genuine], ~masked[imp]), (MASKED, masked[genuine], masked[imp])):
            out.genuine[kind] += g[sel_g].tolist()
            out.impostor[kind] += s_imp[sel_i].tolist()
        out.per_person.append({"person": person, "enroll_photos": k, "enroll_images": len(enroll),
                               "genuine_unmasked": g[~masked[genuine]].tolist(),
                               "genuine_masked": g[masked[genuine]].tolist()})
        out.people += 1
    return out


def threshold_at_far(impostor: Iterable[float], far: float) -> float:
    """The lowest threshold (accept: score >= t) whose false-accept rate is at most ``far``."""
    s = np.sort(np.asarray(list(impostor), np.float64))
    if not len(s):
        return 0.5
    ts = np.unique(s)
    accepted = (len(s) - np.searchsorted(s, ts, "left")) / len(s)  # share of impostors at or above t
    ok = np.nonzero(accepted <= far)[0]
    return float(ts[ok[0]]) if len(ok) else float(s[-1] + 1e-6)


def rate(scores: Iterable[float], t: float, accept: bool) -> float:
    s = np.asarray(list(scores), np.float64)
    if not len(s):
        return float("nan")
    return float(np.mean(s >= t) if accept else np.mean(s < t))


def curve(sc: Scores, points: int = 41) -> list[dict]:
    """FAR (unmasked / masked impostors) and FRR (unmasked / masked genuine) over thresholds."""
    allv = np.concatenate([np.asarray(v, np.float64) for v in (*sc.genuine.values(), *sc.impostor.values()) if v])
    ts = np.unique(np.quantile(allv, np.linspace(0, 1, points)))
    return [{"threshold": float(t),
             "far_unmasked": rate(sc.impostor[UNMASKED], t, True), "far_masked": rate(sc.impostor[MASKED], t, True),
             "frr_unmasked": rate(sc.genuine[UNMASKED], t, False), "frr_masked": rate(sc.genuine[MASKED], t, False)}
            for t in ts]


def eer(genuine: Sequence[float], impostor: Sequence[float]) -> float:
    """Equal error rate: min over observed thresholds of max(FAR, FRR)."""
    g, i = np.sort(np.asarray(genuine, np.float64)), np.sort(np.asarray(impostor, np.float64))
    if not len(g) or not len(i):
        return float("nan")
    ts = np.unique(np.concatenate([g, i]))
    far = (len(i) - np.searchsorted(i, ts, "left")) / len(i)
    frr = np.searchsorted(g, ts, "left") / len(g)
    return float(np.min(np.maximum(far, frr)))


def at_threshold(sc: Scores, t: float) -> dict:
    """FAR and FRR at one threshold, pooled and per person (mean and worst FRR)."""
    per = [rate(p["genuine_unmasked"], t, False) for p in sc.per_person if p["genuine_unmasked"]]
    per_m = [rate(p["genuine_masked"], t, False) for p in sc.per_person if p["genuine_masked"]]
    return {
        "threshold": t, "people": sc.people,
        "far_unmasked": rate(sc.impostor[UNMASKED], t, True), "far_masked": rate(sc.impostor[MASKED], t, True),
        "frr_unmasked": rate(sc.genuine[UNMASKED], t, False), "frr_masked": rate(sc.genuine[MASKED], t, False),
        "frr_unmasked_per_person_mean": float(np.mean(per)) if per else float("nan"),
        "frr_unmasked_per_person_worst": float(np.max(per)) if per else float("nan"),
        "frr_masked_per_person_mean": float(np.mean(per_m)) if per_m else float("nan"),
        "eer_unmasked": eer(sc.genuine[UNMASKED], sc.impostor[UNMASKED]),
        "eer_masked": eer(sc.genuine[MASKED], sc.impostor[MASKED]),
        "tests": {"genuine_unmasked": len(sc.genuine[UNMASKED]), "genuine_masked": len(sc.genuine[MASKED]),
                  "impostor_unmasked": len(sc.impostor[UNMASKED]), "impostor_masked": len(sc.impostor[MASKED])},
    }


def time_head_training(ds: Dataset, neg_idx: np.ndarray, k: int, repeats: int = 5) -> float:
    """Seconds to fit one logistic head (x86, this process): a ratio, not a Pi figure."""
    pos = ds.emb[:k]
    neg = ds.emb[neg_idx]
    t0 = time.perf_counter()
    for _ in range(repeats):
        fit_logistic(pos, neg)
    return (time.perf_counter() - t0) / repeats


def run(ds: Dataset, ks: Sequence[int], far: float, seed: int, n_neg: int, n_cal: int,
        heads: Sequence[str] = tuple(HEADS), max_impostors: int | None = None, max_people: int | None = None,
        max_negatives: int | None = 1000) -> dict:
    """The whole benchmark on embedded images; returns the JSON-able results."""
    groups = split_people(sorted(ds.by_person), seed, n_neg, n_cal)
    neg_idx = np.array([i for p in groups["neg"] for i in ds.by_person[p] if not ds.images[i].masked], dtype=int)
    if max_negatives is not None and len(neg_idx) > max_negatives:
        neg_idx = np.sort(np.random.default_rng(seed).choice(neg_idx, size=max_negatives, replace=False))
    photos = [len(ds.photos(p)) for p in ds.by_person]
    res: dict = {"people": len(ds.by_person), "images": len(ds.images), "max_people": max_people,
                 "photos_per_person": {"min": int(min(photos)), "median": float(np.median(photos)),
                                       "max": int(max(photos))},
                 "groups": {k: len(v) for k, v in groups.items()}, "negatives": int(len(neg_idx)),
                 "far_target": far, "seed": seed, "results": {}}
    for head in heads:
        for k in ks:
            cal = score_group(ds, groups["cal"], neg_idx, k, head, seed, max_impostors, max_people)
            test = score_group(ds, groups["test"], neg_idx, k, head, seed + 1, max_impostors, max_people)
            t = threshold_at_far(cal.impostor[UNMASKED], far)
            res["results"][f"{head}/K={k}"] = {"head": head, "k": k, "cal": at_threshold(cal, t),
                                               "test": at_threshold(test, t), "curve": curve(test)}
            r = res["results"][f"{head}/K={k}"]["test"]
            log.info("%s K=%d: threshold %.3f, %d test people: FAR %.3f / %.3f (unmasked/masked impostors), "
                     "FRR %.3f / %.3f", head, k, t, r["people"], r["far_unmasked"], r["far_masked"],
                     r["frr_unmasked"], r["frr_masked"])
    res["logistic_fit_s_x86"] = {str(k): time_head_training(ds, neg_idx, k) for k in ks}
    return res


def markdown(res: dict) -> str:
    """The results as the model card's table."""
    lines = [
        "| head | K | test people | threshold | FAR unmasked | FAR masked | FRR unmasked | FRR masked | "
        "FRR unmasked per person (mean / worst) | EER unmasked | EER masked |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["results"].values():
        t = r["test"]
        lines.append(f"| {r['head']} | {r['k']} | {t['people']} | {t['threshold']:.3f} | {t['far_unmasked']:.3f} | "
                     f"{t['far_masked']:.3f} | {t['frr_unmasked']:.3f} | {t['frr_masked']:.3f} | "
                     f"{t['frr_unmasked_per_person_mean']:.3f} / {t['frr_unmasked_per_person_worst']:.3f} | "
                     f"{t['eer_unmasked']:.3f} | {t['eer_masked']:.3f} |")
    return "\n".join(lines) + "\n"


def plot(res: dict, path: Path) -> bool:
    """FRR against FAR per head and K (the curve); False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, r in res["results"].items():
        c = r["curve"]
        ax.plot([p["far_unmasked"] for p in c], [p["frr_unmasked"] for p in c], label=f"{name} unmasked")
        ax.plot([p["far_masked"] for p in c], [p["frr_masked"] for p in c], "--", label=f"{name} masked")
    ax.set_xlabel("false accept rate (impostor images)")
    ax.set_ylabel("false reject rate (genuine images)")
    ax.set_xscale("symlog", linthresh=0.01)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("identity, int8 embedder, test people")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--data", type=Path, default=DATAROOTS, help="dataroots folder (default ../shared/...)")
    p.add_argument("--embedder", type=Path, default=EMBEDDER, help="int8/uint8 TFLite embedder")
    p.add_argument("--detector", type=Path, default=DETECTOR, help="detector manifest for sampled_face_images")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "identity")
    p.add_argument("--work", type=Path, default=Path("/tmp/doorguard-identity"), help="embedding cache")
    p.add_argument("--k", type=int, nargs="+", default=[5, 8])
    p.add_argument("--far", type=float, default=0.01, help="target false-accept rate on cal (default 0.01)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--neg-people", type=int, default=150)
    p.add_argument("--cal-people", type=int, default=100)
    p.add_argument("--max-people", type=int, default=None, help="at most this many 'me' people per group and K")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    for path in (args.data, args.embedder, args.detector):
        if not path.exists():
            print(f"identity benchmark: error: {path} not found", file=sys.stderr)
            return 2
    from edge.infer.models import Detector

    images = scan(args.data)
    if not images:
        print(f"identity benchmark: error: no n*.jpg images under {args.data}", file=sys.stderr)
        return 2
    ds = embed_all(images, CoralEmbedder(args.embedder, args.threads),
                   detector_crop(Detector(args.detector, args.threads)), args.work / "embeddings.npz")
    res = run(ds, args.k, args.far, args.seed, args.neg_people, args.cal_people, max_people=args.max_people)
    emb = CoralEmbedder(args.embedder, 1)
    probe = np.zeros((120, 100, 3), np.uint8)
    emb(probe)
    t0 = time.perf_counter()
    for _ in range(20):
        emb(probe)
    res["embed_ms_x86_1thread"] = (time.perf_counter() - t0) / 20 * 1000
    res["embedder"] = str(args.embedder.name)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "identity.json").write_text(json.dumps(res, indent=1))
    (args.out / "identity.md").write_text(markdown(res))
    plot(res, args.out / "identity_curve.png")
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
