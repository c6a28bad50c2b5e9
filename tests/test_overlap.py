"""jetson/overlap.py: a stream's scalograms and model in a second process (--stream without
--realtime). The same CSV as in one process, in order; a model process that cannot start or
dies is one clear error, never a hang. Uses the shipped models/aami (two-channel images and RR
features)."""
import os
import signal
import time

import numpy as np
import pytest

from jetson import overlap, scalograms
from jetson.common import DeviceError
from test_jetson import REPO, infer

AAMI = REPO / "models" / "aami"
ORT = ("--backend", "onnxruntime", "--onnx", AAMI / "ecg_model_float.onnx", "--operator", AAMI / "cwt_operator.npz")


@pytest.mark.parametrize("extra", [(), ("--quality", "--holter")], ids=["plain", "quality"])
def test_overlap_gives_the_csv_of_one_process(mitdb, tmp_path, extra):
    """Record 208 (PVCs, fusion beats; 30 min), 0.1 s chunks: the model process's labels are
    those of the engine's own call, byte for byte, and the run says where the model ran. With the
    quality gate, which holds beats 2.5 s longer and needs their samples: the same CSV and Holter
    summary (the gate must not forget the samples of beats still in the model process)."""
    rec = ("--record", mitdb / "208", "--stream", "--chunk-s", "0.1") + extra
    two, one = tmp_path / "two.csv", tmp_path / "one.csv"
    run = infer(*ORT, *rec, "--out", two)
    assert run.returncode == 0, run.stderr
    assert "the model in a second process" in run.stdout
    run = infer(*ORT, *rec, "--no-overlap", "--out", one)
    assert run.returncode == 0, run.stderr
    assert "second process" not in run.stdout
    assert two.read_text() == one.read_text() and len(two.read_text().splitlines()) > 2900
    if extra:
        assert (tmp_path / "two.holter.json").read_text() == (tmp_path / "one.holter.json").read_text()


def job(n=1):
    rng = np.random.default_rng(n)
    return list(range(n)), rng.standard_normal((2 * n, 200)), rng.standard_normal((n, 7))


def found(numbers):
    return [(b, 100 * b, 100 * b, None, None) for b in numbers]


def test_the_pipeline_keeps_time_order_and_passes_unlabelled_beats():
    op = scalograms.load_operator(str(AAMI / "cwt_operator.npz"))
    pipe = overlap.Pipeline(overlap.ModelProcess(str(AAMI / "ecg_model_float.onnx"), op, True, 64))
    try:
        out = []
        for k in range(20):
            numbers, windows, feats = job(1 + k % 3)
            numbers = [10 * k + i for i in numbers]
            pipe.put(found(numbers), (numbers, windows, feats))
            pipe.put(found([10 * k + 9]), None)   # a beat without a window: no label
            out += pipe.take()
        out += pipe.take(final=True)
    finally:
        pipe.close()
    assert [b[0] for b in out] == sorted(b[0] for b in out) and len(out) == sum(2 + k % 3 for k in range(20))
    assert all((b[3] is None) == (b[0] % 10 == 9) for b in out)
    assert pipe.model.proc is None   # closed: no process left behind


def test_a_model_that_cannot_load_is_one_error(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not an onnx file")
    op = scalograms.load_operator(str(AAMI / "cwt_operator.npz"))
    pipe = overlap.Pipeline(overlap.ModelProcess(str(bad), op, True, 64))
    numbers, windows, feats = job()
    t0 = time.time()
    with pytest.raises(DeviceError, match="not a loadable ONNX model"):
        pipe.put(found(numbers), (numbers, windows, feats))
        pipe.take(final=True)
    pipe.close()
    assert time.time() - t0 < 60


def test_a_model_process_that_dies_is_one_error_not_a_hang():
    op = scalograms.load_operator(str(AAMI / "cwt_operator.npz"))
    pipe = overlap.Pipeline(overlap.ModelProcess(str(AAMI / "ecg_model_float.onnx"), op, True, 64))
    numbers, windows, feats = job()
    pipe.put(found(numbers), (numbers, windows, feats))
    assert pipe.take(final=True)[0][3] is not None
    os.kill(pipe.model.proc.pid, signal.SIGKILL)
    pipe.model.proc.join(timeout=10)
    with pytest.raises(DeviceError, match="the model process ended unexpectedly"):
        for _ in range(overlap.MAX_PENDING + 2):
            pipe.put(found(numbers), (numbers, windows, feats))
            pipe.take()
        pipe.take(final=True)
    pipe.close()


class LateModel(object):
    """A stand-in model process that comes up after `late` pushes and answers in order, in this
    process (the engine's own images and classifier)."""

    def __init__(self, engine_label, late):
        self.label, self.late, self.calls, self.queue = engine_label, late, 0, []

    def accepting(self):
        self.calls += 1
        return self.calls > self.late

    def submit(self, windows, feats, n):
        self.queue.append((windows, feats, n))

    def poll(self):
        return bool(self.queue) and self.calls % 3 == 0   # results come back now and then

    def receive(self):
        windows, feats, n = self.queue.pop(0)
        return self.label(windows, feats, n)

    def close(self):
        pass


def test_beats_labelled_before_the_model_process_is_up_keep_their_place(mitdb):
    """Until the model process is up the engine labels the beats itself; those and the ones sent
    later leave in time order with the labels of a run without it (the same tuples)."""
    import wfdb

    from jetson import runners, streaming

    op = scalograms.load_operator(str(AAMI / "cwt_operator.npz"))
    run = runners.OrtRunner(str(AAMI / "ecg_model_float.onnx"), threads=1)
    classify = runners.softmax_classifier(run, 64)
    x = wfdb.rdrecord(str(mitdb / "208"), channels=[0], sampto=120 * 360).p_signal[:, 0]

    def beats(overlap):
        e = streaming.BeatEngine(op, 360.0, classify, overlap=overlap, template_channel=True)
        out = []
        for i in range(0, len(x), 90):
            out += e.push(x[i:i + 90], final=i + 90 >= len(x))
        return out

    label = lambda w, f, n: classify(scalograms.beat_images(w, op, n, True), f)  # noqa: E731
    late = LateModel(label, 150)
    pipe = overlap.Pipeline(late)
    got = beats(pipe)
    assert got == beats(None) and len(got) > 200
    assert 0 < pipe.sent < len(got) and not pipe.pending
