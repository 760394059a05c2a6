"""make bench-arm without an emulator: the guest's markers on x86 and the report from fake counts."""

from __future__ import annotations

import errno
import json
import os

import pytest

from benchmarks.arm import bench_arm, guest
from edge import cli


# ---- the guest's marker system calls ----------------------------------------------------------

def test_mark_swallows_ebadf_from_the_real_kernel():
    # The marker fds are never open: a real lseek answers EBADF and mark() returns quietly.
    with pytest.raises(OSError) as e:
        os.lseek(guest.MARK_START, 7, os.SEEK_SET)
    assert e.value.errno == errno.EBADF
    guest.mark(guest.MARK_START, 7)
    guest.mark(guest.MARK_STOP, 7)


def test_mark_raises_any_other_error(monkeypatch):
    def einval(fd, pos, how):
        raise OSError(errno.EINVAL, "invalid")

    monkeypatch.setattr(guest.os, "lseek", einval)
    with pytest.raises(OSError) as e:
        guest.mark(guest.MARK_START, 1)
    assert e.value.errno == errno.EINVAL


def test_segments_number_tags_and_mark_start_and_stop(monkeypatch):
    calls = []
    monkeypatch.setattr(guest, "mark", lambda fd, tag: calls.append((fd, tag)))
    seg = guest.Segments()
    with seg.segment(group="model", kind="invoke") as rec:
        rec["found"] = 2
    with pytest.raises(RuntimeError):
        with seg.segment(group="pipeline", kind="new"):
            raise RuntimeError("boom")
    assert calls == [(guest.MARK_START, 1), (guest.MARK_STOP, 1), (guest.MARK_START, 2), (guest.MARK_STOP, 2)]
    assert seg.items == [{"tag": 1, "group": "model", "kind": "invoke", "found": 2},
                         {"tag": 2, "group": "pipeline", "kind": "new"}]


def test_guest_main_runs_on_x86_and_prints_its_result_line(capsys):
    assert guest.main(["--parts", "empty"]) == 0
    result = bench_arm.parse_result(capsys.readouterr().out)
    assert [s["tag"] for s in result["segments"]] == [1, 2]
    assert {s["group"] for s in result["segments"]} == {"empty"}
    assert result["facts"]["opencv_threads"] == 1


# ---- parsing the plugin's file and the guest's line -------------------------------------------

def test_parse_counts_reads_tag_count_lines_and_keeps_errors():
    counts, errors = bench_arm.parse_counts("1 100\n2 2500000\n\nerror stop 9 without start\n")
    assert counts == {1: 100, 2: 2500000}
    assert errors == ["error stop 9 without start"]


def test_parse_result_takes_the_last_result_line_and_fails_without_one():
    out = "INFO: noise\nARMBENCH-JSON {\"segments\": []}\nARMBENCH-JSON {\"segments\": [{\"tag\": 1}]}\n"
    assert bench_arm.parse_result(out) == {"segments": [{"tag": 1}]}
    with pytest.raises(ValueError):
        bench_arm.parse_result("Illegal instruction\n")


def test_join_leaves_none_where_the_plugin_wrote_no_count():
    joined = bench_arm.join({"segments": [{"tag": 1, "kind": "a"}, {"tag": 2, "kind": "b"}]}, {1: 5})
    assert joined == [{"tag": 1, "kind": "a", "count": 5}, {"tag": 2, "kind": "b", "count": None}]


def test_spread_ppm():
    assert bench_arm.spread_ppm([1_000_000, 1_000_010]) == pytest.approx(10.0, rel=1e-3)
    assert bench_arm.spread_ppm([5]) is None


# ---- the report from a fake pair of runs ------------------------------------------------------

def _fake_run(scale: float) -> dict:
    """A guest result for one profile, counts scaled by ``scale`` (the A76 runs fewer)."""
    segs = [{"group": "empty", "kind": "empty", "rep": 0, "count": 10_000}]
    for faces, found in ((0, 0), (1, 1), (3, 3)):
        base = {"group": "pipeline", "backend": "litert", "faces": faces}
        segs += [
            {**base, "kind": "new", "found": found, "classified": found, "labels": ["mask"] * found,
             "count": int((60e6 + 30e6 * faces) * scale)},
            {**base, "kind": "settled", "frames": 10, "classified": 2 * faces,
             "count": int(10 * (60e6 + 6e6 * faces) * scale)},
            {**base, "kind": "det_pre", "count": int(10e6 * scale)},
            {**base, "kind": "det_pre_lores", "size": "448x336", "count": int(4e6 * scale)},
            {**base, "kind": "det_infer", "count": int(48e6 * scale)},
            {**base, "kind": "det_post", "count": int(2e6 * scale)},
            {"group": "pipeline", "backend": "tflite_runtime", "faces": faces, "kind": "new",
             "count": int((150e6 + 40e6 * faces) * scale)},
        ]
        segs += [{**base, "kind": "crop_classify", "face": k, "count": int(30e6 * scale)} for k in range(faces)]
        segs += [{"group": "baseline", "faces": faces, "kind": "detect", "rep": r, "found": 0, "persons": 0,
                  "count": 600_000_000 + r * 6000} for r in range(2)]
    for backend, factor in (("litert", 1.0), ("tflite_runtime", 2.5)):
        m = {"group": "model", "model": "yoloface-500k-v2-facemask", "precision": "int8", "backend": backend}
        segs += [{**m, "kind": "load", "count": 30_000_000}, {**m, "kind": "first", "count": 56_000_000}]
        segs += [{**m, "kind": "invoke", "rep": r, "count": int(50e6 * factor * scale) + r} for r in range(2)]
    idle = {"group": "idle", "backend": "litert", "faces": 0, "frames": 5}
    segs += [{**idle, "kind": "gated", "skipped": 5, "recheck_s": 5.0, "count": int(5 * 2e6 * scale)},
             {**idle, "kind": "ungated", "found": 0, "count": int(5 * 64e6 * scale)}]
    for i, s in enumerate(segs, 1):
        s["tag"] = i
    return {"segments": segs, "wall_s": 100.0,
            "missing": [{"model": "yoloface-500k-v2-facemask", "precision": "float32", "missing": "x"}],
            "facts": {"python": "3.11.2", "cpu_part": "0xd08"},
            "frames": {"0": {"image": "a", "crop": [0, 1, 2, 3]}, "1": {"image": "b", "crop": None}}}


def test_summary_and_markdown_from_fake_counts(tmp_path):
    runs = {"pi4": _fake_run(1.0), "pi5": _fake_run(0.5)}
    repeat = {"profile": "pi4", "parts": "pipeline", "segments": [
        {**s, "count": s["count"] + 1} for s in runs["pi4"]["segments"] if s["group"] == "pipeline"]}
    summary = bench_arm.summarize(runs, repeat)

    row = next(r for r in summary["pipeline"] if r["profile"] == "pi4" and r["faces"] == 3)
    assert row["new"] == 150e6 and row["settled"] == pytest.approx(78e6) and row["found"] == 3
    assert row["baseline"] == 600_000_000 and row["classify_per_face"] == 30e6
    assert summary["within_run"]["pi4"]["max_ppm"] == pytest.approx(10.0, rel=1e-2)  # baseline 6000 / 600 M
    assert summary["across_runs"]["segments"] == 25 and summary["across_runs"]["max_ppm"] < 1
    assert set(summary["across_runs"]["max_ppm_by_kind"]) >= {"pipeline new", "pipeline settled"}
    assert summary["marker_overhead"] == {"pi4": 10_000, "pi5": 10_000}

    md = bench_arm.render_markdown(summary, runs, {"date": "today", "host": "x86_64", "total_s": 60.0})
    # Pipeline vs baseline: 600 M / 150 M on pi4 with 3 faces.
    assert "| pi4 | 3 | 3 | 150.0 | 78.0 | 600.0 | 4.00x | 7.69x | 0 (0) |" in md
    # A72 / A76 ratio of the litert int8 invoke, and tflite-runtime / litert.
    assert "| yoloface-500k-v2-facemask | int8 | ai-edge-litert | 50.0 | 25.0 | 2.00x |" in md
    assert "| yoloface-500k-v2-facemask | pi4 | - | - | 2.50x | - |" in md
    # A model without its float32 build says so instead of a number.
    assert "| yoloface-500k-v2-facemask | float32 | - | not built (make models) |" in md
    # The projection states its assumptions; the numbers follow from them.
    p4 = bench_arm.PROJECTION["pi4"]
    assert f"at {p4['ghz']} GHz with IPC {p4['ipc']}" in md and "not measured" in md
    assert f"| pi4 | 3 | {150e6 / (p4['ipc'] * p4['ghz'] * 1e6):.1f} |" in md
    assert "not speed" in md
    json.dumps(summary)  # what bench-arm.json holds must serialise


def test_idle_rows_give_the_gated_cost_and_the_periodic_check_amortized():
    summary = bench_arm.summarize({"pi4": _fake_run(1.0), "pi5": _fake_run(0.5)})
    row = next(r for r in summary["idle"] if r["profile"] == "pi4")
    assert row["gated"] == 2e6 and row["ungated"] == 64e6 and row["ratio"] == pytest.approx(2 / 64)
    # 5 fps, a detector frame every 5 s: 24 gated frames + 1 full one per 25
    assert row["amortized_5fps"] == pytest.approx((24 * 2e6 + 64e6) / 25)
    md = bench_arm.render_markdown(summary, {"pi4": _fake_run(1.0), "pi5": _fake_run(0.5)}, {})
    assert "| pi4 | 2.00 | 64.0 | 0.03x | 5 of 5 | 4.48 / 0.07x | 2.83 / 0.04x |" in md
    # the lores path's preprocess beside today's letterbox
    assert "| pi4 | 0 | 10.0 | 4.0 | 48.0 |" in md


def test_driver_refuses_unknown_profiles_before_running_anything(monkeypatch, capsys):
    monkeypatch.setattr(bench_arm.os, "geteuid", lambda: 0)
    monkeypatch.setattr(bench_arm, "_run", lambda *a, **k: pytest.fail("ran a command"))
    assert cli.main(["bench-arm", "--profiles", "pi3"]) == 2  # how make bench-arm runs it
    assert "unknown profile" in capsys.readouterr().err


@pytest.mark.shared
def test_bench_frames_hold_the_faces_their_names_promise(shared, capsys):
    # The same frames and code the emulated run uses, here on x86 with ai-edge-litert (bit-exact
    # with ARM for int8): the 0/1/3-face frames must still give 0/1/3 faces with the shipped models.
    assert guest.main(["--shared", str(shared), "--parts", "pipeline"]) == 0
    result = bench_arm.parse_result(capsys.readouterr().out)
    found = {s["faces"]: s["found"] for s in result["segments"] if s["kind"] == "new"}
    assert found == {faces: faces for faces in guest.FRAMES}


def test_shipped_models_are_the_manifests_in_models_default_ones_first():
    paths = guest.shipped_models(bench_arm.ROOT)
    names = [p.stem for p in paths]
    assert names[:2] == ["yoloface-500k-v2-facemask", "mask-classifier"]
    assert "eval" not in names and len(names) == len(set(names)) >= 3


def test_a_model_without_its_float32_build_is_noted_not_counted(tmp_path):
    # A clean clone has no *.float32.tflite (gitignored, made by `make models`).
    import shutil

    import numpy as np

    (tmp_path / "models").mkdir()
    for suffix in (".json", ".tflite"):
        shutil.copy(bench_arm.ROOT / "models" / f"mask-classifier{suffix}", tmp_path / "models")
    seg = guest.Segments()
    notes = guest.bench_models(seg, tmp_path, np.zeros((480, 640, 3), np.uint8), ("litert",), reps=1)
    assert [(n["model"], n["precision"]) for n in notes] == [("mask-classifier", "float32")]
    assert {(s["precision"], s["kind"]) for s in seg.items} == {("int8", "load"), ("int8", "first"),
                                                               ("int8", "invoke")}
