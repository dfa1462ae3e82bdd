"""Shots: streaming cut detection on real encoded video, per-shot snippet plans, cut-list files,
shots.json and the contact sheet."""

from __future__ import annotations

import io
import re

import av
import numpy as np
import pytest
from PIL import Image

from rdengine.engine.batching import last_batch_of_shots, plan_batches
from rdengine.engine.shots.contact_sheet import contact_sheet, sheet_layout, thumbnail
from rdengine.engine.shots.cut_lists import clip_cuts, parse_time, read_cut_list, smpte_to_frame
from rdengine.engine.shots.detector import CutDetector, default_min_shot
from rdengine.engine.shots.model import Shot, plan_shot_snippets, shot_refinement_dilations, shots_from_cuts
from rdengine.engine.shots.shots_json import read_shots_json, write_shots_json
from rdengine.engine.snippets import SnippetGroup, plan_snippets, refinement_dilations, uncovered_frames
from rdengine.engine.testing.synthetic_clip import edit_frames, encode_frames, synthetic_edit, synthetic_frames
from rdengine.storage.inputs import open_input
from rdengine.storage.exporters.colour_video import colour_table

FPS = 12
SHOT_LENGTHS = (20, 20, 20)
TRUE_CUTS = [20, 40]
W, H = 128, 96


def decode(path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def detect(frames, method: str, **kw) -> list[int]:
    det = CutDetector(method, fps=FPS, **kw)
    for i, frame in enumerate(frames):
        det.feed(i, frame)
    return det.cuts()


@pytest.fixture(scope="module")
def edit(tmp_path_factory):
    """Three different scenes (20 frames each) in one real H.264 mp4, decoded back with PyAV."""
    frames, cuts = synthetic_edit(SHOT_LENGTHS, W, H, seed=1)
    assert cuts == TRUE_CUTS
    path = encode_frames(tmp_path_factory.mktemp("shots") / "edit.mp4", frames, fps=FPS)
    decoded = decode(path)
    assert len(decoded) == sum(SHOT_LENGTHS)
    return decoded


@pytest.fixture(scope="module")
def one_scene(tmp_path_factory):
    """One scene with motion (a drifting disc, a sliding bar that wraps around), 60 frames."""
    path = encode_frames(tmp_path_factory.mktemp("shots") / "one.mp4", synthetic_frames(60, W, H, seed=3), fps=FPS)
    return decode(path)


@pytest.fixture(scope="module")
def detected(edit):
    return detect(edit, "content")


# ---------------------------------------------------------------------------------------------
# detection


@pytest.mark.parametrize("method", ["content", "adaptive"])
def test_cuts_found_at_the_right_frames_in_a_real_encoded_edit(edit, method):
    cuts = detect(edit, method)
    assert len(cuts) == len(TRUE_CUTS)
    assert all(abs(c - t) <= 1 for c, t in zip(cuts, TRUE_CUTS)), cuts


@pytest.mark.parametrize("method", ["content", "adaptive"])
def test_one_scene_with_motion_has_no_cuts(one_scene, method):
    assert detect(one_scene, method) == []


def test_the_hard_cut_after_fast_motion_is_found_in_a_real_encoded_clip(tmp_path):
    """Fast jerky pans, then hard cuts (to a calm shot, and between two fast shots), a flash: the
    default detector finds every cut and no flash; the content detector misses the cut between the
    fast shots (its flash filter merges it into the motion)."""
    edit = edit_frames([("fast", 30), ("calm", 30), ("fast", 30), ("fast", 30)], ["cut", "cut", "cut"], 192, 108,
                       seed=3, flashes=[(45, 2)])
    assert [t.start for t in edit.transitions] == [30, 60, 90] and edit.transitions[0].after_fast
    clip = encode_frames(tmp_path / "action.mp4", edit.frames, fps=24)
    frames = [view.array() for view in open_input(str(clip)).views()]
    assert len(frames) == 120

    def cuts(**kw) -> list[int]:
        det = CutDetector(fps=24, **kw)
        for i, frame in enumerate(frames):
            det.feed(i, frame)
        return det.cuts()

    assert cuts() == [30, 60, 90]
    assert 90 not in cuts(method="content")  # fast -> fast
    assert 45 in cuts(flash_frames=0)  # what the flash check drops


def test_large_frames_are_downscaled_and_give_the_same_cuts():
    frames, cuts = synthetic_edit(SHOT_LENGTHS, 400, 240, seed=1)
    det = CutDetector("content", fps=FPS)
    for i, frame in enumerate(frames):
        det.feed(i, frame)
    assert det.cuts() == cuts
    assert det.describe()["detect_size"] == [256, 154]


def test_cuts_are_in_the_index_space_fed_and_reported_as_they_are_confirmed(edit):
    det = CutDetector("adaptive", fps=FPS)
    reported = {}
    for i, frame in enumerate(edit):
        for c in det.feed(100 + i, frame):
            reported[c] = 100 + i
    assert det.cuts() == [c + 100 for c in TRUE_CUTS]
    assert all(0 <= at - c <= det.lag for c, at in reported.items())


def test_min_shot_keeps_only_the_first_cut_of_a_flash():
    frames, cuts = synthetic_edit((20, 3, 20), W, H, seed=5)
    assert cuts == [20, 23]
    assert detect(frames, "content", min_shot=6) == [20]
    assert detect(frames, "content", min_shot=2) == [20, 23]


def test_detector_arguments_and_order_are_checked():
    assert default_min_shot(30) == 15 and default_min_shot(24) == 12 and default_min_shot(None) == 15
    assert CutDetector("content").threshold == 27.0 and CutDetector("adaptive").threshold == 1.5
    assert CutDetector().method == "adaptive" and CutDetector().flash_frames == 2
    with pytest.raises(ValueError, match="unknown cut detection method"):
        CutDetector("histogram")
    det = CutDetector("content", fps=FPS)
    frame = np.zeros((H, W, 3), np.uint8)
    det.feed(0, frame)
    with pytest.raises(ValueError, match="in order"):
        det.feed(2, frame)
    with pytest.raises(ValueError, match="uint8"):
        det.feed(1, frame.astype(np.float32))
    det.feed(1, frame[..., 0])  # gray is accepted
    assert det.cuts() == []
    with pytest.raises(RuntimeError):
        det.feed(2, frame)


def test_pyscenedetect_06_frame_number_api(monkeypatch):
    import scenedetect.detectors

    class Legacy:  # PySceneDetect 0.6: int frame numbers in and out, BGR frames
        def __init__(self, threshold, min_scene_len):
            self.seen = []

        def process_frame(self, frame_num, frame_img):
            assert isinstance(frame_num, int) and frame_img.shape == (H, W, 3)
            self.seen.append((frame_num, tuple(frame_img[0, 0])))
            return [frame_num] if frame_num == 5 else []

        def post_process(self, frame_num):
            return [frame_num - 1]

    monkeypatch.setattr(scenedetect.detectors, "ContentDetector", Legacy)
    det = CutDetector("content", fps=FPS, flash_frames=0)  # the frames never change: every cut would be a flash
    red = np.zeros((H, W, 3), np.uint8)
    red[..., 0] = 255
    assert [c for i in range(3, 10) for c in det.feed(i, red)] == [5]
    assert det.cuts() == [5, 8] and det._detector.seen[0] == (3, (0, 0, 255))  # fed BGR


# ---------------------------------------------------------------------------------------------
# shots


def test_shots_from_cuts_edge_cases():
    assert shots_from_cuts([], 10) == [Shot(0, 0, 10)]
    assert shots_from_cuts([0, -3, 10, 12], 10) == [Shot(0, 0, 10)]
    assert shots_from_cuts([7, 3, 7, 3], 10) == [Shot(0, 0, 3), Shot(1, 3, 7), Shot(2, 7, 10)]
    assert shots_from_cuts([1, 2], 3) == [Shot(0, 0, 1), Shot(1, 1, 2), Shot(2, 2, 3)]
    assert shots_from_cuts([5], 0) == [] and shots_from_cuts([], 1) == [Shot(0, 0, 1)]
    shot = Shot(2, 10, 14)
    assert list(shot.frames) == [10, 11, 12, 13] and len(shot.frames) == shot.num_frames == 4
    assert shot.middle == 12 and Shot(0, 5, 6).middle == 5


# ---------------------------------------------------------------------------------------------
# snippet groups with an offset; per-shot plans


def _old_frames(d, L, i):  # the pre-offset formulas, kept here as the reference
    return [i + j * d for j in range(L)]


def _old_touching(d, L, T, first, stop, slot):
    count = max(0, T - (L - 1) * d)
    lo = max(0, first - slot * d)
    return lo, max(lo, min(count, stop - slot * d))


@pytest.mark.parametrize("d,L,T", [(1, 3, 10), (4, 2, 17), (10, 3, 30), (25, 3, 40), (3, 4, 7)])
def test_offset_zero_is_the_original_group_and_an_offset_only_shifts_frames(d, L, T):
    g = SnippetGroup(dilation=d, length=L, num_frames=T)
    assert g == SnippetGroup(d, L, T, 0) and g.offset == 0 and g.stop == T
    old_table = np.arange(0, g.count)[:, None] + d * np.arange(L)[None, :]
    assert np.array_equal(g.frame_table(), old_table) and g.frame_table().dtype == old_table.dtype
    assert np.array_equal(g.frame_table(1, 3), np.arange(1, 3)[:, None] + d * np.arange(L)[None, :])
    for i in range(g.count):
        assert g.frames(i) == _old_frames(d, L, i)
    windows = [(a, b) for a in range(0, T + 2, 3) for b in range(a, T + 4, 5)]
    for slot in range(L):
        for a, b in windows:
            assert g.snippets_touching(a, b, slot) == _old_touching(d, L, T, a, b, slot)
    s = SnippetGroup(d, L, T, offset=37)
    assert s.count == g.count and s.stop == 37 + T and uncovered_frames(s) == uncovered_frames(g)
    assert np.array_equal(s.frame_table(), g.frame_table() + 37)
    assert all(s.frames(i) == [f + 37 for f in g.frames(i)] for i in range(g.count))
    for slot in range(L):
        for a, b in windows:
            assert s.snippets_touching(a + 37, b + 37, slot) == g.snippets_touching(a, b, slot)
        assert s.snippets_touching(0, 37, slot) == (0, 0)  # frames before the shot touch nothing


@pytest.mark.parametrize("T,dil,lens,cap", [(100, (1, 10, 25), (3, 3, 3), True), (60, (1, 25), (3, 3), False),
                                            (40, (1, 4, 10), (3, 2, 4), False), (2, (1, 25), (3, 3), True),
                                            (1, (1,), (3,), True)])
def test_single_shot_plan_is_plan_snippets_exactly(T, dil, lens, cap):
    groups, notes = plan_shot_snippets(shots_from_cuts([], T), dil, lens, cap)
    assert (groups, notes) == ([plan_snippets(T, dil, lens, cap)[0]], plan_snippets(T, dil, lens, cap)[1])
    for size in (1, 4, 64):  # one shot: per length, the batches planned before the stream crossed shots
        batches = plan_batches([list(range(len(groups[0])))], groups[0], size)
        for length in sorted({g.length for g in groups[0]}):
            queue = sorted((i, k) for k, g in enumerate(groups[0]) if g.length == length for i in range(g.count))
            old = [tuple((k, i) for i, k in queue[at:at + size]) for at in range(0, len(queue), size)]
            assert [b.members for b in batches if b.length == length] == old


@pytest.mark.parametrize("cap", [True, False])
def test_no_snippet_spans_a_cut_and_dilation_one_covers_every_frame(cap):
    T = 130
    shots = shots_from_cuts([20, 23, 24, 60, 126], T)  # shots of 20, 3, 1, 36, 66, 4 frames
    groups, notes = plan_shot_snippets(shots, (1, 10, 25), (3, 3, 3), cap)
    assert len(groups) == len(shots)
    covered = np.zeros(T, dtype=int)
    for shot, shot_groups in zip(shots, groups):
        assert shot_groups[0].dilation == 1
        for g in shot_groups:
            assert g.offset == shot.start and g.num_frames == shot.num_frames
            table = g.frame_table()
            assert table.min() >= shot.start and table.max() < shot.stop
        covered[shot_groups[0].frame_table().ravel()] += 1
    assert (covered > 0).all()
    assert all(n.startswith("shot ") for n in notes)
    # batches over all shots: every snippet once, in global start-frame order per length
    flat = [g for shot_groups in groups for g in shot_groups]
    at = np.cumsum([0] + [len(g) for g in groups])
    batches = plan_batches([list(range(a, b)) for a, b in zip(at[:-1], at[1:])], flat, 7)
    members = [m for b in batches for m in b.members]
    assert sorted(members) == sorted((k, i) for k, g in enumerate(flat) for i in range(g.count))
    for length in {g.length for g in flat}:
        starts = [flat[k].frames(i)[0] for b in batches if b.length == length for k, i in b.members]
        assert starts == sorted(starts)


def test_small_shots_fill_full_batches_and_no_shot_waits_long_for_a_rare_length():
    shots = shots_from_cuts(list(range(10, 200, 10)), 200)  # 20 shots of 10 frames
    groups, _ = plan_shot_snippets(shots, (1, 4), (3, 3), cap=True)
    flat = [g for shot_groups in groups for g in shot_groups]
    at = np.cumsum([0] + [len(g) for g in groups])
    shot_groups = [list(range(a, b)) for a, b in zip(at[:-1], at[1:])]
    batches = plan_batches(shot_groups, flat, 32)
    assert [len(b.members) for b in batches[:-1]] == [32] * (len(batches) - 1)  # batches cross cuts
    shot_of = [k for k, members in enumerate(shot_groups) for _ in members]
    last = last_batch_of_shots(batches, shot_of, len(shots))
    assert list(last) == sorted(last)  # shots complete in order
    # a two-frame shot's length-2 snippet is sent two shots later, not at the end of the film
    shots = shots_from_cuts([30, 32, 60, 90, 120, 150], 180)
    groups, _ = plan_shot_snippets(shots, (1,), (3,), cap=True)
    flat = [g for shot_groups in groups for g in shot_groups]
    batches = plan_batches([[k] for k in range(len(flat))], flat, 16)
    shot_of = list(range(len(flat)))
    assert last_batch_of_shots(batches, shot_of, len(shots))[1] < last_batch_of_shots(batches, shot_of, len(shots))[4]


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_a_short_shot_is_planned_like_a_short_video(n):
    shots = shots_from_cuts([30, 30 + n], 60)
    groups, notes = plan_shot_snippets(shots, (1, 10, 25), (3, 3, 3), cap=True)
    video_groups, video_notes = plan_snippets(n, (1, 10, 25), (3, 3, 3), cap=True)
    assert [SnippetGroup(g.dilation, g.length, g.num_frames) for g in groups[1]] == video_groups
    assert all(g.offset == 30 for g in groups[1])
    prefix = f"shot 1 (frames 30-{30 + n - 1}): "
    assert [m[len(prefix):] for m in notes if m.startswith(prefix)] == [
        m.replace("-frame video", "-frame shot") for m in video_notes]
    assert refinement_dilations(4, 6, 3, n, True) == shot_refinement_dilations(shots, 4, 6, 3, True)[1]


# ---------------------------------------------------------------------------------------------
# cut-list files: the same cuts as detection on the same clip


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def cuts_of(path, num_frames=60, start=0):
    """Clip positions of a cut list's boundaries on the frames ``start .. start + num_frames - 1`` of a
    12 fps video (the frames' numbers and times as the run store holds them)."""
    numbers = np.arange(start, start + num_frames)
    return clip_cuts(read_cut_list(path, FPS), numbers, numbers / FPS, FPS)[0]


def test_text_cut_lists(tmp_path, detected):
    assert cuts_of(_write(tmp_path, "a.txt", "# cuts of the edit\n20\n40 # second\n40\n")) == detected
    assert cuts_of(_write(tmp_path, "b.txt", "20, 40")) == detected
    # the input's frame numbers and timecodes; with --start 10 the clip starts at frame 10
    path = _write(tmp_path, "c.cuts", "30 00:00:04:02\n5 200\n")
    assert cuts_of(path, start=10) == detected
    numbers = np.arange(10, 70)
    _, outside = clip_cuts(read_cut_list(path, FPS), numbers, numbers / FPS, FPS)
    assert [(p.value, p.where) for p in outside] == [(5, "c.cuts:2"), (200, "c.cuts:2")]


def test_csv_cut_lists(tmp_path, detected):
    from scenedetect import FrameTimecode, write_scene_list

    bounds = [0, *detected, 60]
    scenes = [(FrameTimecode(a, float(FPS)), FrameTimecode(b, float(FPS))) for a, b in zip(bounds, bounds[1:])]
    for include_cut_list in (True, False):
        buf = io.StringIO()
        write_scene_list(buf, scenes, include_cut_list=include_cut_list)
        path = _write(tmp_path, "scenes.csv", buf.getvalue())
        assert cuts_of(path) == detected
    path = _write(tmp_path, "scenes_v06.csv", "Timecode List:,00:00:01.667,00:00:03.333\n" + buf.getvalue())
    assert cuts_of(path) == detected
    simple = [("smpte.csv", "start,end\n00:00:00:00,00:00:01:08\n00:00:01:08,00:00:03:04\n00:00:03:04,00:00:05:00\n"),
              ("ms.csv", "Start,End\n00:00:00.000,00:00:01.667\n00:00:01.667,00:00:03.333\n00:00:03.333,00:00:05.000\n"),
              ("frames.csv", "# shot list\nin,out,name\n0,20,a\n20,40,b\n40,60,c\n"),
              ("headerless.csv", "0,20\n20,40\n40,60\n")]
    for name, text in simple:
        assert cuts_of(_write(tmp_path, name, text)) == detected, name
    assert cuts_of(_write(tmp_path, "ends.csv", "start\n0\n20\n40\n")) == detected
    with pytest.raises(ValueError, match=re.escape("back.csv:3: event ends (10) before it starts (30)")):
        read_cut_list(_write(tmp_path, "back.csv", "in,out\n0,20\n30,10\n"), FPS)


EDL = """TITLE: EDIT
FCM: NON-DROP FRAME

001  AX       V     C        00:00:10:00 00:00:11:08 01:00:00:00 01:00:01:08
* FROM CLIP NAME: a.mov
001  AX       A     C        00:00:10:00 00:00:11:08 01:00:00:00 01:00:01:08
002  BX       V     C        00:01:00:00 00:01:01:08 01:00:01:08 01:00:03:04
* FROM CLIP NAME: b.mov
003  CX       V     C        00:02:00:00 00:02:01:08 01:00:03:04 01:00:05:00
003  CX       A2    C        00:02:00:00 00:02:00:03 01:00:03:07 01:00:03:10
"""


def test_edl_cut_lists(tmp_path, detected):
    assert cuts_of(_write(tmp_path, "cut.edl", EDL)) == detected
    assert cuts_of(_write(tmp_path, "cut.edl", EDL), num_frames=70) == [*detected, 60]
    assert cuts_of(_write(tmp_path, "cut_edl.txt", EDL)) == detected  # sniffed
    from scenedetect import FrameTimecode
    from scenedetect.output import write_scene_list_edl  # PySceneDetect's own CMX3600 writer (0.7)

    bounds = [0, *detected, 60]
    scenes = [(FrameTimecode(a, float(FPS)), FrameTimecode(b, float(FPS))) for a, b in zip(bounds, bounds[1:])]
    buf = io.StringIO()
    write_scene_list_edl(buf, scenes, start_timecode="01:00:00:00")
    assert cuts_of(_write(tmp_path, "psd.edl", buf.getvalue())) == detected


def test_timecode_values():
    assert smpte_to_frame("00:00:01:08", 12) == 20 and smpte_to_frame("01:00:00:00", 25) == 90000
    assert smpte_to_frame("00:00:01:00", 24000 / 1001) == 24  # non-drop counts nominal frames
    assert smpte_to_frame("00:01:00;02", 30000 / 1001) == 1800  # drop-frame: labels ;00 ;01 skipped
    assert smpte_to_frame("00:10:00;00", 30000 / 1001) == 17982 and smpte_to_frame("01:00:00;00", 59.94) == 215784
    assert parse_time("00:00:01.667", 12) == (1.667, "seconds") and parse_time("2.5", 12) == (2.5, "seconds")
    assert parse_time("2s", 12) == (2.0, "seconds") and parse_time("01:02.5", 12) == (62.5, "seconds")
    assert parse_time("7", 12) == (7, "number") and parse_time("7", 12, seconds=True) == (7.0, "seconds")
    assert parse_time("00:00:01:08", 12) == (20, "timecode")
    for bad, fps in [("00:00:01:12", 12), ("00:01:00;00", 30000 / 1001), ("00:00:00;05", 25), ("abc", 12),
                     ("00:61:00", 12), ("1:2:3:4:5", 12)]:
        with pytest.raises(ValueError):
            parse_time(bad, fps)


@pytest.mark.parametrize("name,text,line", [
    ("bad.txt", "20\n# fine\n4o\n", 3),
    ("bad.csv", "start,end\n0,20\n20,x\n", 3),
    ("nohead.csv", "begin,finish\n0,20\n", 1),
    ("missing.csv", "in,out\n0,20\n,40\n", 3),
    ("bad.edl", "TITLE: X\nFCM: NON-DROP FRAME\n001  AX V C 00:00:00:00 00:00:01:08 01:00:00:00 01:00:61:08\n", 3),
    ("short.edl", "TITLE: X\n001  AX V C 01:00:00:00 01:00:01:08\n", 2),
    ("junk.edl", "TITLE: X\nhello world\n", 2),
    ("drop.edl", "FCM: DROP FRAME\n001  AX V C 00:00:00;00 00:00:01;08 01:00:00;00 01:00:01;08\n", 2),
])
def test_malformed_cut_lists_name_file_and_line(tmp_path, name, text, line):
    path = _write(tmp_path, name, text)
    with pytest.raises(ValueError) as err:
        read_cut_list(path, FPS)
    message = str(err.value)
    assert message.startswith(f"{path}:{line}: ") and "\n" not in message


def test_unreadable_cut_lists_name_the_file(tmp_path):
    for path, match in [(tmp_path / "nope.txt", "cannot read"), (_write(tmp_path, "empty.edl", "TITLE: X\n"), "no video")]:
        with pytest.raises(ValueError, match=match) as err:
            read_cut_list(path, FPS)
        assert str(err.value).startswith(f"{path}: ")
    with pytest.raises(ValueError, match="frame rate"):
        read_cut_list(_write(tmp_path, "x.txt", "3"), 0)


# ---------------------------------------------------------------------------------------------
# outputs


def test_shots_json_round_trips(tmp_path, detected):
    shots = shots_from_cuts(detected, 60)
    source = CutDetector("content", fps=FPS).describe()
    numbers = np.arange(10, 70)  # --start 10
    path = write_shots_json(tmp_path / "shots.json", shots, FPS, source=source, numbers=numbers, times=numbers / FPS)
    back, doc = read_shots_json(path)
    assert back == shots
    assert doc["cuts"] == detected and doc["source"] == source and doc["num_frames"] == 60
    assert doc["clip_start_frame"] == 10 and doc["fps"] == FPS
    assert doc["shots"][1] == {"index": 1, "start": 20, "end": 40, "frames": 20, "first_frame_number": 30,
                               "last_frame_number": 49, "start_seconds": round(30 / FPS, 6),
                               "end_seconds": round(50 / FPS, 6)}
    assert doc["shots"][2]["end_seconds"] == round(70 / FPS, 6)
    with pytest.raises(ValueError, match="not a shots.json"):
        read_shots_json(_write(tmp_path, "bad.json", "{}"))


def test_thumbnail_keeps_aspect_and_never_enlarges():
    rgb = np.zeros((96, 128, 3), np.uint8)
    assert thumbnail(rgb, 48).shape == (36, 48, 3) and thumbnail(rgb, 48).dtype == np.uint8
    assert thumbnail(rgb, 500).shape == (96, 128, 3)
    depth = np.linspace(0, 1, 40 * 30, dtype=np.float32).reshape(40, 30)
    small = thumbnail(depth, 20)
    assert small.shape == (20, 15) and small.dtype == np.float32


@pytest.mark.parametrize("columns", [None, 2])
def test_contact_sheet_has_one_tile_per_shot(tmp_path, edit, detected, columns):
    shots = shots_from_cuts(detected, len(edit))
    depth = np.add.outer(np.arange(24.0), np.arange(32.0))  # a ramp at another size than the thumbnails
    thumbs = [(thumbnail(edit[s.middle], 48), depth * (s.index + 1)) for s in shots]
    path = tmp_path / "sheet.png"
    boxes = contact_sheet(path, thumbs, shots, columns=columns)
    size, origins = sheet_layout(len(shots), (48, 36), columns)
    assert size == ((3 if columns is None else 2) * (2 * 48 + 2) + (4 if columns is None else 3) * 6,
                    (1 if columns is None else 2) * (16 + 36) + (2 if columns is None else 3) * 6)
    sheet = np.asarray(Image.open(path).convert("RGB"))
    assert sheet.shape == (size[1], size[0], 3)
    assert len(boxes) == len(shots)
    table = {tuple(c) for c in colour_table("Spectral")}
    for (rgb, _), (x0, y0, x1, y1), (ox, oy) in zip(thumbs, boxes, origins):
        assert (x0, y0) == (ox, oy + 16)
        assert np.array_equal(sheet[y0:y1, x0:x1], rgb)  # the shot's own middle frame
        depth_tile = sheet[y0:y1, x1 + 2:x1 + 2 + 48].reshape(-1, 3)
        assert {tuple(c) for c in depth_tile} <= table  # colourized with the engine's colormap
        assert tuple(depth_tile[0]) == tuple(colour_table("Spectral")[0])  # own range: min -> first colour
        assert (sheet[oy:oy + 16, ox:ox + 2 * 48 + 2] > 128).any()  # a label was drawn
    # the three shots' middle frames differ, so the tiles do
    assert not np.array_equal(thumbs[0][0], thumbs[1][0]) and not np.array_equal(thumbs[1][0], thumbs[2][0])
    with pytest.raises(ValueError, match="one thumbnail per shot"):
        contact_sheet(path, thumbs[:2], shots)


def test_contact_sheet_of_many_shots_comes_in_pages_of_a_fixed_size(tmp_path):
    """100 one-frame shots: three pages (48, 48, 4 tiles) of thumbnails, not one 33000-px picture;
    a later sheet of 10 shots removes the pages it no longer has, and only those."""
    from rdengine.engine.progress import Progress
    from rdengine.engine.shots.contact_sheet import PAGE_SHOTS
    from rdengine.engine.stages.export import export_shots
    from rdengine.storage import layout
    from rdengine.storage.inputs import open_input
    from rdengine.storage.run_store import RunStore

    frames = 100
    clip = encode_frames(tmp_path / "film.mp4", synthetic_frames(frames, 320, 180), fps=24)
    store = RunStore.create_or_resume(tmp_path / "run.zarr", {"test": "pages"})
    depth = store.require(layout.DEPTH, (frames, 180, 320), "float32", ("frame", "y", "x"), unit=frames)
    depth.write(0, np.broadcast_to(np.linspace(-1, 1, 320, dtype=np.float32), (frames, 180, 320)))
    store.write_whole(layout.FRAME, np.arange(frames, dtype=np.int64), ("frame",))
    store.write_whole(layout.TIME, np.arange(frames) / 24.0, ("frame",))
    user_file = tmp_path / "film_shots_p9.png"
    user_file.write_bytes(b"not ours")

    def sheet(cuts):
        return export_shots(store, tmp_path, "film", shots_from_cuts(cuts, frames), lambda: open_input(str(clip)).views(),
                            24.0, {"method": "file"}, "Spectral", Progress("quiet"))

    paths = sheet(range(1, frames))
    pages = [paths["contact"], tmp_path / "film_shots_p2.png", tmp_path / "film_shots_p3.png"]
    assert sorted(tmp_path.glob("film_shots*.png")) == sorted([*pages, user_file])
    full, _ = sheet_layout(PAGE_SHOTS, (160, 90))
    assert [Image.open(p).size for p in pages] == [full, full, sheet_layout(4, (160, 90))[0]]
    assert full[1] < 1400  # a page stays a page, whatever the number of shots
    assert read_shots_json(paths["shots"])[0][-1] == Shot(99, 99, 100)
    sheet(range(10, frames, 10))  # 10 shots now: one page
    assert sorted(tmp_path.glob("film_shots*.png")) == sorted([paths["contact"], user_file])
    assert user_file.read_bytes() == b"not ours"
