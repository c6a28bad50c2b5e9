"""Stage 4: the test report every later stage reuses (any model that maps images to logits)."""
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import classification_report, confusion_matrix, f1_score

from . import files
from .inference import predict


def metrics(y_true, y_pred, classes):
    """Confusion matrix, per-class P/R/F1, macro and weighted F1, and AAMI EC57 Se, +P, Sp."""
    labels = list(range(len(classes)))
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    total = cm.sum()
    per_class = {}
    for i, name in enumerate(classes):
        tp = cm[i, i]
        fn = cm[i].sum() - tp
        fp = cm[:, i].sum() - tp
        tn = total - tp - fn - fp
        per_class[name] = {"support": int(cm[i].sum()),
                           "sensitivity": _ratio(tp, tp + fn),        # Se = recall
                           "positive_predictivity": _ratio(tp, tp + fp),  # +P = precision
                           "specificity": _ratio(tn, tn + fp),
                           "f1": _ratio(2 * tp, 2 * tp + fp + fn)}
    return {"accuracy": float(np.trace(cm) / total) if total else 0.0,
            "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
            "weighted_f1": float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)),
            "confusion_matrix": cm.tolist(), "classes": list(classes), "per_class": per_class,
            "report": classification_report(y_true, y_pred, labels=labels, target_names=list(classes), digits=4,
                                            zero_division=0)}


def _ratio(a, b):
    return float(a / b) if b else 0.0


def time_model(forward, example_batch, repeats=30, batch_sizes=(1, 64)):
    """Median wall time of `forward` at batch 1 (latency) and batch 64 (throughput), warm."""
    out = {}
    for bs in batch_sizes:
        x = _batch_of(example_batch, bs)
        for _ in range(3):
            forward(x)
        times = []
        for _ in range(repeats if bs == 1 else max(5, repeats // 5)):
            t0 = time.perf_counter()
            forward(x)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        out[f"batch{bs}_ms"] = med * 1000
        out[f"batch{bs}_images_per_s"] = bs / med
    return out


def _batch_of(example, bs):
    """`bs` inputs from an example batch (a tensor, or a tuple of them for a two-input model)."""
    if isinstance(example, tuple):
        return tuple(_batch_of(e, bs) for e in example)
    return example[:1].repeat(bs, *[1] * (example.dim() - 1)) if bs > len(example) else example[:bs]


def torch_forward(model):
    model.eval()

    @torch.no_grad()
    def forward(x):
        if isinstance(x, tuple):
            return model(x[0].contiguous(memory_format=torch.channels_last), *x[1:])
        return model(x.contiguous(memory_format=torch.channels_last))

    return forward


def write_report(reports_dir, name, m, extra=None):
    """reports/<name>.txt, .json and <name>_confusion_matrix.png (name 'test_result' for stage 4)."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    data = {k: v for k, v in m.items() if k != "report"}
    data.update(extra or {})
    files.write_text(reports_dir / f"{name}.json", json.dumps(data, indent=2))
    files.write_text(reports_dir / f"{name}.txt", format_report(m, extra))
    plot_confusion(reports_dir / ("confusion_matrix.png" if name == "test_result" else f"{name}_confusion_matrix.png"),
                   np.array(m["confusion_matrix"]), m["classes"], name)


def format_report(m, extra=None):
    cm = np.array(m["confusion_matrix"])
    classes = m["classes"]
    w = max(8, max(len(c) for c in classes) + 2)
    lines = [f"accuracy     {m['accuracy']:.4f}", f"macro F1     {m['macro_f1']:.4f}",
             f"weighted F1  {m['weighted_f1']:.4f}", "", "confusion matrix (rows: true, columns: predicted), counts:",
             " " * w + "".join(f"{c:>{w}}" for c in classes)]
    for c, row in zip(classes, cm):
        lines.append(f"{c:>{w}}" + "".join(f"{v:>{w}d}" for v in row))
    lines += ["", "row %:", " " * w + "".join(f"{c:>{w}}" for c in classes)]
    for c, row in zip(classes, cm):
        pct = row / max(row.sum(), 1) * 100
        lines.append(f"{c:>{w}}" + "".join(f"{v:>{w}.2f}" for v in pct))
    lines += ["", m["report"], "AAMI EC57 per class:", f"{'class':>{w}}   Se (%)   +P (%)   Sp (%)   support"]
    for c, pc in m["per_class"].items():
        lines.append(f"{c:>{w}} {pc['sensitivity'] * 100:8.2f} {pc['positive_predictivity'] * 100:8.2f} "
                     f"{pc['specificity'] * 100:8.2f} {pc['support']:9d}")
    if extra:
        lines += [""] + [f"{k}: {v:.3f}" if isinstance(v, float) else f"{k}: {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def plot_confusion(path, cm, classes, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pct = cm / np.maximum(cm.sum(1, keepdims=True), 1) * 100
    fig, ax = plt.subplots(figsize=(1.3 * len(classes) + 2.5, 1.1 * len(classes) + 2))
    im = ax.imshow(pct, cmap="Blues", vmin=0, vmax=100)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{cm[i, j]}\n{pct[i, j]:.1f}%", ha="center", va="center", fontsize=8,
                    color="white" if pct[i, j] > 60 else "black")
    ax.set(xticks=range(len(classes)), yticks=range(len(classes)), xticklabels=classes, yticklabels=classes,
           xlabel="predicted", ylabel="true", title=title)
    fig.colorbar(im, ax=ax, label="row %")
    fig.tight_layout()
    files.save_with(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"), suffix=".png")
    plt.close(fig)


def provenance(model_path, test_dir):
    """What a test report was made from: the model file (path and SHA-256) and the test split's
    id (stage 2's STAMP), so a later stage can tell whether the report still holds."""
    from .records import sha256
    from .split import split_id

    return {"model": str(model_path), "model_sha256": sha256(model_path), "test_split": split_id(test_dir)}


def reported_scores(report, prov, n_images):
    """Accuracy and macro F1 from a report written for the same model file and test split
    (`provenance`) on as many images; None when there is no such report."""
    try:
        r = json.loads(Path(report).read_text())
        same = prov["test_split"] and all(r.get(k) == v for k, v in prov.items() if k != "model")
        if same and r.get("test_images") == n_images:
            return {"accuracy": r["accuracy"], "macro_f1": r["macro_f1"]}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def evaluate_and_report(net, classes, data, reports_dir, name, device, extra=None):
    """Predict `data` with `net`, time it, write the report files; return the metrics."""
    net.to(device, memory_format=torch.channels_last).eval()
    t0 = time.perf_counter()
    logits = predict(net, data, device, desc="test")
    seconds = time.perf_counter() - t0
    m = metrics(data.targets.numpy(), logits.argmax(1).numpy(), classes)
    timing = {"test_images": len(data), "test_images_per_s": len(data) / seconds, "device": str(device),
              "threads": torch.get_num_threads()}
    first = data[0][0]
    example = tuple(t.unsqueeze(0).to(device) for t in first) if isinstance(first, tuple) else first.unsqueeze(0).to(device)
    timing.update(time_model(torch_forward(net), example))
    write_report(reports_dir, name, m, {**timing, **(extra or {})})
    print(format_report(m, timing))
    return m, logits


def gallery_png(path):
    """A scalogram file as the gallery shows it: as stored, or for a beat + template image (two
    channels, grey + alpha) the two side by side, so a browser does not draw the template as
    transparency."""
    data = Path(path).read_bytes()
    if len(data) > 25 and data[25] == 4:
        from . import dataset, scalogram

        pair = dataset.read_image(path)
        return scalogram.encode_png(np.concatenate([pair[0], pair[1]], axis=1))
    return data


def write_error_gallery(out_dir, paths, y_true, logits, classes, per_pair, labels=None):
    """`out_dir` (reports/errors/): index.html showing the misclassified images grouped by
    (true, predicted) pair, most frequent pair first, at most `per_pair` per pair (the most
    confident first), each with its true and predicted class and confidence; errors.csv lists every
    misclassified image (its path relative to the test folder). The images are copied into the
    folder, which is replaced whole (jetson/report.py, shared with the device's report). Returns the
    number of misclassified images."""
    from jetson import report

    from .errors import UserError

    probs = torch.softmax(torch.as_tensor(logits).float(), 1).numpy()
    y, pred, conf = np.asarray(y_true), probs.argmax(1), probs.max(1)
    named = [f"{c} ({labels[c]})" if labels and labels.get(c) else c for c in classes]
    wrong = np.flatnonzero(pred != y)
    lines = ["path,true,predicted,confidence,p_true"] + [
        f"{paths[i].parent.name}/{paths[i].name},{classes[y[i]]},{classes[pred[i]]},{conf[i]:.4f},"
        f"{probs[i, y[i]]:.4f}" for i in wrong]
    files = {"errors.csv": ("\n".join(lines) + "\n").encode()}
    groups = report.error_groups(y, pred, conf, per_pair)
    body = [report.table(["", ""], [["test images", report.cell(len(y))], ["misclassified", report.cell(len(wrong))]]),
            report.table(["true", "predicted", "images", "shown"],
                         [[named[t], named[p], report.cell(n), report.cell(len(idx))] for t, p, n, idx in groups]),
            '<p class="note">Every misclassified image: <a href="errors.csv">errors.csv</a>. Below, at most '
            f'{per_pair} per pair, the most confident first (scalograms shown at twice their size).</p>']
    for t, p, n, idx in groups:
        items = []
        for i in idx:
            rel = f"images/{classes[t]}_as_{classes[p]}/{paths[i].name}"
            files[rel] = gallery_png(paths[i])
            items.append((rel, paths[i].name, [f"true {named[t]}, predicted {named[p]}",
                                               f"confidence {conf[i]:.3f} (p true {probs[i, t]:.3f})",
                                               paths[i].name], True))
        body.append(report.gallery(f"true {named[t]} \u2192 predicted {named[p]}: {n} images",
                                   f"the {len(idx)} most confident", items, img_class="scalogram"))
    try:
        report.replace_folder(out_dir, {**files, "index.html": report.page("Misclassified test images", body)})
    except report.ReportError as e:
        raise UserError(str(e)) from None
    return len(wrong)
