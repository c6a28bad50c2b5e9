"""Pictures and reports (jetson/report.py): the device's --plot / --report on a real record (PNG
strips, one HTML page whose numbers equal the --score JSON and which uses only files it wrote),
the clear error without matplotlib, and stage 4's gallery of misclassified test images."""
import csv
import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import run_script
from helpers import THESIS_NAMES, fake_scalograms, record_excerpt
from test_jetson import JETSON, infer

from ecg import evaluation
from jetson import report

NO_MATPLOTLIB = "import sys\nsys.modules['matplotlib'] = None\n"   # `import matplotlib` raises ImportError


class Page(HTMLParser):
    """The files an HTML page uses (src, href) and its numbers by data-key."""

    def __init__(self, text):
        super().__init__()
        self.links, self.numbers, self._key = [], {}, None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.links += [a[k] for k in ("src", "href") if k in a]
        self._key = a.get("data-key")

    def handle_data(self, data):
        if self._key:
            self.numbers[self._key] = data
            self._key = None


def page_of(folder):
    return Page((folder / "index.html").read_text(encoding="utf-8"))


def files_in(folder):
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != report.MARKER}


def assert_self_contained(folder):
    """Every file the page uses is in the folder, and every file there is used by the page."""
    links = set(page_of(folder).links)
    assert all("://" not in link and not link.startswith("/") for link in links), links
    assert links == files_in(folder) - {"index.html"}
    assert "<script" not in (folder / "index.html").read_text()


def lookup(obj, key):
    for part in key.split("."):
        obj = obj[int(part)] if isinstance(obj, list) else obj[part]
    return obj


def assert_numbers_equal(numbers, summary):
    """Each number printed with a data-key equals the JSON value to the digits printed."""
    assert numbers
    for key, text in numbers.items():
        value = lookup(summary, key)
        if value is None:
            assert text == "n/a", key
            continue
        digits = len(text.split(".")[1]) if "." in text else 0
        assert abs(float(text) - value) <= 0.5 * 10 ** -digits + 1e-9, (key, text, value)


# -- unit tier: shared pieces, stage 4's gallery on synthetic data, no matplotlib ------------------
def test_replace_folder_swaps_whole_and_never_deletes_a_foreign_folder(tmp_path):
    dest = tmp_path / "rep"
    report.replace_folder(dest, {"index.html": b"1", "a/x.png": b"x", "a/y.png": b"y"})
    report.replace_folder(dest, {"index.html": b"2", "a/x.png": b"x2"})
    assert files_in(dest) == {"index.html", "a/x.png"} and (dest / "a" / "x.png").read_bytes() == b"x2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]   # no temp folders left
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    with pytest.raises(report.ReportError, match="not a report folder"):
        report.replace_folder(foreign, {"index.html": b""})
    assert (foreign / "notes.txt").read_text() == "keep"


def test_device_refuses_a_foreign_report_folder_before_any_work(tmp_path):
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "a.txt").write_text("keep")
    run = infer("--backend", "onnxruntime", "--onnx", tmp_path / "missing.onnx", "--csv", tmp_path / "x.csv",
                "--fs", "360", "--out", tmp_path / "b.csv", "--report", foreign)
    assert run.returncode == 2 and run.stderr.splitlines() == [
        f"error: {foreign}: exists and is not a report folder (no .ecg-report file in it): give a new or empty folder"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes"] and (foreign / "a.txt").read_text() == "keep"


def gallery_entries(folder):
    return {Path(link).name: Path(link).parent.name for link in page_of(folder).links if link.startswith("images/")}


def test_each_logged_beat_keeps_its_own_image_across_calls_and_unreadable_beats():
    """The log pairs each labelled beat with the image the classifier saw for it, in order, also
    when the quality gate holds beats back across calls and marks some U (they take their image
    and drop it: a misalignment would put another beat's scalogram in the gallery)."""
    from jetson.long_log import LongBeatLog

    for log in (report.BeatLog(per_pair=8, low_confidence=0.6), LongBeatLog(360.0)):
        classify = log.wrap(lambda u8, rr: (np.zeros(len(u8), int), np.full(len(u8), 0.5)))
        images = [np.full((2, 100, 100), k, np.uint8) for k in range(6)]   # beat and template channel
        classify(np.stack(images[:2]), None)
        classify(np.stack(images[2:5]), None)
        log.unreadable(10, "N")
        log.beat(20, 0, 0.5)            # low confidence: offered to the gallery with its image
        classify(np.stack(images[5:]), None)
        log.unreadable(30)
        log.beat(40, 1, 0.5)
        log.beat(50, 0, 0.5)
        log.beat(60, 2, 0.5)
        kept = {-n: img[0, 0] for _, n, img in log.low}
        assert kept == {1: 1, 3: 3, 4: 4, 5: 5} and not log.images
        assert log.class_counts(3) == [2, 1, 1] and log.n_unreadable == 2
        beats = log.beats()
        assert list(beats["pred"]) == [-1, 0, -1, 1, 0, 2] and not any(beats["wrong"])


def test_error_gallery_lists_exactly_the_misclassified_images(tmp_path):
    root = fake_scalograms(tmp_path / "test", per_class={"0": 8, "1": 6, "2": 4})
    paths = [p for c in ("0", "1", "2") for p in sorted((root / c).glob("*.png"))]
    y = np.array([int(p.parent.name) for p in paths])
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(len(y), 3)).astype(np.float32)
    logits[np.arange(len(y)), y] += 1.0
    pred = logits.argmax(1)
    wrong = {paths[i].name: f"{y[i]}_as_{pred[i]}" for i in np.flatnonzero(pred != y)}
    assert 3 <= len(wrong) < len(y)
    out = tmp_path / "reports" / "errors"
    n = evaluation.write_error_gallery(out, paths, y, torch.from_numpy(logits), ["0", "1", "2"], 100,
                                       {"0": "Normal", "1": "LBBB"})
    assert n == len(wrong) and gallery_entries(out) == wrong
    assert_self_contained(out)
    for rel in files_in(out) - {"index.html", "errors.csv"}:   # the test images themselves, copied
        assert (out / rel).read_bytes() == (root / rel.split("/")[1].split("_as_")[0] / Path(rel).name).read_bytes()
    listed = list(csv.DictReader(open(out / "errors.csv")))
    assert {Path(r["path"]).name for r in listed} == set(wrong)
    assert all(r["true"] != r["predicted"] and float(r["confidence"]) >= float(r["p_true"]) for r in listed)
    # bounded: at most one per pair, the most confident; the folder is replaced, no stale image stays
    conf = torch.softmax(torch.from_numpy(logits), 1).numpy().max(1)
    evaluation.write_error_gallery(out, paths, y, torch.from_numpy(logits), ["0", "1", "2"], 1)
    shown = gallery_entries(out)
    assert set(shown.values()) == set(wrong.values()) and len(shown) == len(set(wrong.values()))
    for name, pair in shown.items():
        best = max((conf[i], paths[i].name) for i in range(len(y)) if wrong.get(paths[i].name) == pair)
        assert name == best[1]
    assert files_in(out) - {"index.html", "errors.csv"} == {f"images/{p}/{n}" for n, p in shown.items()}
    assert len(list(csv.DictReader(open(out / "errors.csv")))) == len(wrong)   # the CSV stays complete


def no_matplotlib_env(tmp_path):
    shim = tmp_path / "shim"
    shim.mkdir(exist_ok=True)
    (shim / "sitecustomize.py").write_text(NO_MATPLOTLIB)
    return {**os.environ, "PYTHONPATH": str(shim)}


@pytest.mark.parametrize("flag", [["--plot"], ["--report", "rep"]])
def test_plots_without_matplotlib_are_one_clear_error(tmp_path, flag):
    env = no_matplotlib_env(tmp_path)
    check = subprocess.run([sys.executable, "-c", "import matplotlib"], env=env, capture_output=True)
    assert check.returncode != 0   # the shim works
    out = tmp_path / "b.csv"
    run = subprocess.run([sys.executable, str(JETSON / "infer_trt.py"), "--backend", "onnxruntime", "--onnx",
                          str(tmp_path / "model.onnx"), "--csv", str(tmp_path / "x.csv"), "--fs", "360", "--out",
                          str(out), *flag], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert run.returncode == 2
    assert run.stderr.splitlines() == [
        "error: plots need matplotlib, which is not installed here: pip3 install matplotlib "
        "(JetPack 4.6 / Python 3.6: sudo apt-get install python3-matplotlib)"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shim"]   # nothing written


# -- data tier: the device on a real record --------------------------------------------------------
@pytest.fixture(scope="module")
def model(request):
    """model_save of the quantized fixture (or of DEVICE_TEST_WORKDIR, a finished run of the same steps)."""
    pre = os.environ.get("DEVICE_TEST_WORKDIR")
    return (Path(pre) if pre else request.getfixturevalue("quantized")) / "model_save"


@pytest.fixture(scope="module")
def record_208(mitdb, tmp_path_factory):
    """The first 3 minutes of MIT-BIH 208 (N, V and F beats) as a WFDB record with its .atr."""
    return record_excerpt(mitdb, "208", 180 * 360, tmp_path_factory.mktemp("rec208"))


def ort(model, *args):
    return ["--backend", "onnxruntime", "--onnx", model / "ecg_model_float.onnx",
            "--operator", model / "cwt_operator.npz", *args]


def decodes_as_png(path):
    img = cv2.imread(str(path))
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and img is not None and img.shape[0] > 50


def test_record_report_and_plots(model, record_208, tmp_path):
    out, rep = tmp_path / "b.csv", tmp_path / "rep"
    run = infer(*ort(model, "--record", record_208, "--score", "--out", out, "--plot", "--report", rep,
                     "--low-confidence", "0.9"))
    assert run.returncode == 0, run.stderr
    strips = sorted((tmp_path / "b_strips").glob("*.png"))
    assert len(strips) == 3 and all(decodes_as_png(p) for p in strips)   # 3 minutes, 60 s a page
    assert all(decodes_as_png(rep / f) for f in files_in(rep) if f.endswith(".png"))
    assert [p.read_bytes() for p in strips] == [(rep / p.name).read_bytes() for p in strips]
    assert_self_contained(rep)
    summary = json.load(open(tmp_path / "b.score.json"))
    numbers = page_of(rep).numbers
    counts = {k[len("class_counts."):]: int(v) for k, v in numbers.items() if k.startswith("class_counts.")}
    beats = list(csv.DictReader(open(out)))
    named = dict(zip(summary["classification"]["classes"], THESIS_NAMES))   # the CSV reads class 3 as PVC
    assert counts == {c: sum(b["predicted"] == named[c] for b in beats) for c in summary["classification"]["classes"]}
    assert_numbers_equal({k: v for k, v in numbers.items() if not k.startswith("class_counts.")}, summary)
    for key in ("run.beats", "run.realtime_factor", "detection.se", "detection.ppv", "classification.confusion.3.3",
                "classification.per_class.3.f1"):
        assert key in numbers
    # the gallery: misclassified (reference in the model's classes, another prediction) or doubtful beats
    sym = {"N": "Normal", "L": "LBBB", "R": "RBBB", "V": "PVC"}
    by_sample = {int(b["sample"]): b for b in beats}
    shown = [int(Path(f).stem.split("_")[1]) for f in files_in(rep) if f.startswith("beats/")]
    assert shown
    for s in shown:
        b = by_sample[s]
        assert sym.get(b["annotation"], b["predicted"]) != b["predicted"] or float(b["confidence"]) < 0.9
    # a re-run replaces the report whole
    run = infer(*ort(model, "--record", record_208, "--out", out, "--report", rep, "--gallery", "0"))
    assert run.returncode == 0, run.stderr
    assert not [f for f in files_in(rep) if f.startswith("beats/")]
    assert_self_contained(rep)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.csv", "b.score.json", "b_strips", "rep"]


def test_stream_of_a_csv_gets_a_report_without_scores(model, record_208, tmp_path):
    import wfdb

    x = wfdb.rdrecord(str(record_208), sampto=40 * 360).p_signal[:, 0]
    src = tmp_path / "ecg.csv"
    src.write_text("mV\n" + "\n".join("{:.4f}".format(v) for v in x) + "\n")
    rep = tmp_path / "rep"
    run = infer(*ort(model, "--csv", src, "--fs", "360", "--stream", "--out", tmp_path / "s.csv", "--plot",
                     "--report", rep))
    assert run.returncode == 0, run.stderr
    assert decodes_as_png(tmp_path / "s_strips" / "strip_001.png")
    numbers = page_of(rep).numbers
    assert not any(k.startswith(("detection", "classification")) for k in numbers)
    assert int(numbers["run.beats"]) == len(list(csv.DictReader(open(tmp_path / "s.csv"))))
    assert_self_contained(rep)


def test_without_matplotlib_the_device_runs_as_before(model, record_208, tmp_path):
    out = tmp_path / "b.csv"
    run = subprocess.run([sys.executable, str(JETSON / "infer_trt.py"), *map(str, ort(
        model, "--record", record_208, "--out", out))], capture_output=True, text=True, cwd=JETSON,
        env=no_matplotlib_env(tmp_path))
    assert run.returncode == 0, run.stderr
    assert len(list(csv.DictReader(open(out)))) > 100


# -- stage 4's gallery with a trained model -------------------------------------------------------
@pytest.fixture(scope="module")
def trained_work(request):
    pre = os.environ.get("DEVICE_TEST_WORKDIR")
    return Path(pre) if pre else request.getfixturevalue("trained")


def test_stage4_writes_the_gallery_of_its_errors(trained_work, tmp_path):
    # a model and a test folder from elsewhere (--data: no train/val folders beside it are needed)
    run_script("4_testing.py", "--workdir", tmp_path, "--model", trained_work / "model_save" / "ecg_model.pth",
               "--data", trained_work / "data" / "test_images", "--errors-per-pair", "100000")
    reports = tmp_path / "reports"
    cm = np.array(json.loads((reports / "test_result.json").read_text())["confusion_matrix"])
    listed = list(csv.DictReader(open(reports / "errors" / "errors.csv")))
    assert len(listed) == cm.sum() - np.trace(cm)
    for t, p in {(r["true"], r["predicted"]) for r in listed}:
        assert sum(r["true"] == t and r["predicted"] == p for r in listed) == cm[int(t), int(p)]
    assert all(Path(r["path"]).parent.name == r["true"] for r in listed)
    assert gallery_entries(reports / "errors") == {
        Path(r["path"]).name: "{}_as_{}".format(r["true"], r["predicted"]) for r in listed}
    assert_self_contained(reports / "errors")
