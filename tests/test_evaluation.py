"""The AAMI EC57 figures and F1 of ecg/evaluation.py against a confusion matrix worked by hand; when
a test report may stand for a model (provenance)."""
import json

import numpy as np
import pytest

from ecg import evaluation

# rows: true class, columns: predicted class (17 beats)
CM = [[5, 1, 0],
      [2, 3, 1],
      [0, 1, 4]]
CLASSES = ["A", "B", "C"]


def labels_from(cm):
    y_true, y_pred = [], []
    for i, row in enumerate(cm):
        for j, n in enumerate(row):
            y_true += [i] * n
            y_pred += [j] * n
    return np.array(y_true), np.array(y_pred)


# by hand, e.g. class A: TP 5, FN 1 (row A), FP 2 (column A), TN 17 - 5 - 1 - 2 = 9
HAND = {"A": {"sensitivity": 5 / 6, "positive_predictivity": 5 / 7, "specificity": 9 / 11, "f1": 10 / 13,
              "support": 6},
        "B": {"sensitivity": 3 / 6, "positive_predictivity": 3 / 5, "specificity": 9 / 11, "f1": 6 / 11,
              "support": 6},
        "C": {"sensitivity": 4 / 5, "positive_predictivity": 4 / 5, "specificity": 11 / 12, "f1": 8 / 10,
              "support": 5}}


def test_aami_figures_equal_the_hand_worked_matrix():
    m = evaluation.metrics(*labels_from(CM), CLASSES)
    assert m["confusion_matrix"] == CM
    for name, expected in HAND.items():
        got = m["per_class"][name]
        assert got["support"] == expected["support"]
        for key in ("sensitivity", "positive_predictivity", "specificity", "f1"):
            assert got[key] == pytest.approx(expected[key], abs=1e-12), (name, key)
    assert m["accuracy"] == pytest.approx(12 / 17)
    assert m["macro_f1"] == pytest.approx((10 / 13 + 6 / 11 + 8 / 10) / 3)
    assert m["weighted_f1"] == pytest.approx((6 * 10 / 13 + 6 * 6 / 11 + 5 * 8 / 10) / 17)


def test_class_never_seen_nor_predicted_scores_zero_but_full_specificity():
    y_true, y_pred = labels_from(CM)
    m = evaluation.metrics(y_true, y_pred, CLASSES + ["D"])
    d = m["per_class"]["D"]
    assert d == {"support": 0, "sensitivity": 0.0, "positive_predictivity": 0.0, "specificity": 1.0, "f1": 0.0}
    assert m["macro_f1"] == pytest.approx((10 / 13 + 6 / 11 + 8 / 10) / 4)  # counted, as sklearn does


def test_report_prints_the_aami_table_in_percent():
    text = evaluation.format_report(evaluation.metrics(*labels_from(CM), CLASSES))
    table = text.split("AAMI EC57 per class:")[1].splitlines()
    row_a = next(line for line in table if line.split() and line.split()[0] == "A")
    assert row_a.split() == ["A", "83.33", "71.43", "81.82", "6"]
    assert "accuracy     0.7059" in text


def test_reported_scores_are_reused_only_for_the_same_model_and_split(tmp_path):
    """Stage 5 takes the unpruned model's figures from stage 4's report only when that report was
    made for the same model file (SHA-256) and the same stage-2 split; anything else is predicted anew."""
    from ecg import split

    model, test = tmp_path / "m.pth", tmp_path / "test"
    model.write_bytes(b"weights")
    test.mkdir()
    (test / split.STAMP).write_text("run-1\n")
    report = tmp_path / "test_result.json"
    prov = evaluation.provenance(model, test)
    report.write_text(json.dumps({"accuracy": 0.9, "macro_f1": 0.8, "test_images": 10, **prov}))
    assert evaluation.reported_scores(report, prov, 10) == {"accuracy": 0.9, "macro_f1": 0.8}
    assert evaluation.reported_scores(report, prov, 11) is None             # another image count
    model.write_bytes(b"other weights")                                      # stage 3 re-run
    assert evaluation.reported_scores(report, evaluation.provenance(model, test), 10) is None
    model.write_bytes(b"weights")
    (test / split.STAMP).write_text("run-2\n")                              # stage 2 re-run
    assert evaluation.reported_scores(report, evaluation.provenance(model, test), 10) is None
    (test / split.STAMP).unlink()                                           # a hand-made folder: no id to trust
    assert evaluation.reported_scores(report, evaluation.provenance(model, test), 10) is None
    assert evaluation.reported_scores(tmp_path / "missing.json", prov, 10) is None
    report.write_text("{not json")
    assert evaluation.reported_scores(report, prov, 10) is None
