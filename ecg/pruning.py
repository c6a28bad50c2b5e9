"""Stage 5: L1-magnitude channel pruning with torch-pruning, fine-tuning, honest before/after
figures and the ratio sweep (5_magnitude_channel_pruning.py only orchestrates)."""
import copy
import json
import os
import tempfile
from pathlib import Path

import torch
import torch_pruning as tp

from . import evaluation, files, training
from .errors import UserError


def check_ratios(ratios):
    for r in ratios:
        if not 0 < r < 1:
            raise UserError(f"pruning ratio {r} is outside (0, 1)")


def prune(model, ratio=0.5, round_to=None, inputs=None):
    """Remove `ratio` of the channels of every prunable conv group, ranked by the L1 norm of
    their weights (p=1, as the thesis describes; torch-pruning's default is L2). The final
    classifier Linear keeps its outputs (one per class). `inputs`: the model's example inputs
    (model.example_inputs; default one 1x1x100x100 image).

    An RR model (RRFusionNet) keeps its fusion head whole: `rr_layer` and the classifier are
    ignored, so only the image path's channels are pruned; the classifier's input columns
    that read the pruned image features go with them (torch-pruning follows the concat), the
    columns of the RR features stay."""
    if not 0 < ratio < 1:
        raise UserError(f"pruning ratio {ratio} is outside (0, 1)")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    if not convs:
        raise UserError("the model has no conv layers to prune")
    ignored = [_classifier(model)] + [m for m in _rr_head(model).modules() if isinstance(m, torch.nn.Linear)]
    pruner = tp.pruner.BasePruner(model, _inputs(inputs), importance=tp.importance.MagnitudeImportance(p=1),
                                  pruning_ratio=ratio, ignored_layers=ignored, round_to=round_to)
    model.eval()
    pruner.step()
    return model


def _inputs(inputs, input_size=100):
    """Example inputs as a tuple (torch-pruning calls model(*inputs))."""
    return tuple(inputs) if inputs is not None else (torch.zeros(1, 1, input_size, input_size),)


def _rr_head(model):
    """The RR features' own layer of a fused model (nothing for the image-only model)."""
    return getattr(model, "rr_layer", None) or torch.nn.Sequential()


def _classifier(model):
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    if not last:
        raise UserError("the model has no Linear classifier")
    return last[-1]


def size_figures(model, inputs=None):
    """Parameters and MACs (torch-pruning's own count) for one 1x1xHxW image (with its RR
    features for an RR model; `inputs` as in prune), and the size on disk of the weights-only file."""
    model.eval()
    macs, params = tp.utils.count_ops_and_params(model, _inputs(inputs))
    fd, tmp = tempfile.mkstemp(suffix=".pth")
    os.close(fd)
    try:
        torch.save(model.state_dict(), tmp)
        size = os.path.getsize(tmp)
    finally:
        os.unlink(tmp)
    return {"params": int(params), "macs": int(macs), "file_bytes": size}


def figures(net, example):
    """Size figures and CPU latency / throughput (evaluation.time_model) of `net`; `example`: one
    input batch (a tensor, or the (image, rr) pair of an RR model)."""
    fig = size_figures(net, example if isinstance(example, tuple) else None)
    fig.update(evaluation.time_model(evaluation.torch_forward(net), example))
    return fig


def prune_and_finetune(source, ratio, round_to, inputs, tune, train_data, val_data, device, ckpt_path,
                       log_path, resume=False):
    """A pruned copy of `source`, fine-tuned with the settings `tune` (Config.section("prune"):
    epochs, lr, batch_size, step_size, gamma, seed); returns the best-on-validation model (on
    the CPU, in eval mode) and the fine-tuning history."""
    net = prune(copy.deepcopy(source), ratio, round_to or None, inputs)
    history, best = training.fit(net, train_data, val_data, tune, device, ckpt_path, log_path, resume=resume,
                                 desc=f"fine-tune r={ratio}")
    net.load_state_dict(best["state_dict"])
    return net.cpu().eval(), history


def test_scores(net, data):
    """Accuracy and macro F1 of `net` on `data`, predicted on the CPU."""
    logits = training.predict(net, data, torch.device("cpu"))
    m = evaluation.metrics(data.targets.numpy(), logits.argmax(1).numpy(), data.classes)
    return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}


SUMMARY_ROWS = [("parameters", "params", "{:,.0f}"), ("MACs (1x1x100x100)", "macs", "{:,.0f}"),
                ("file size (bytes)", "file_bytes", "{:,.0f}"), ("CPU latency, batch 1 (ms)", "batch1_ms", "{:.2f}"),
                ("CPU throughput, batch 64 (img/s)", "batch64_images_per_s", "{:.1f}"),
                ("test accuracy", "accuracy", "{:.4f}"), ("test macro F1", "macro_f1", "{:.4f}")]


def format_summary(s):
    """reports/prune_summary.txt: unpruned against pruned, one row per figure."""
    b, a = s["before"], s["after"]
    lines = [f"L1-magnitude channel pruning, ratio {s['ratio']}, round_to {s['round_to']} "
             f"(CPU timings: median, {s['threads']} threads)", f"{'':34s}{'unpruned':>16s}{'pruned':>16s}{'ratio':>9s}"]
    for label, key, fmt in SUMMARY_ROWS:
        lines.append(f"{label:34s}{fmt.format(b[key]):>16s}{fmt.format(a[key]):>16s}{a[key] / b[key]:>9.3f}")
    return "\n".join(lines) + "\n"


def sweep(source, ratios, round_to, inputs, tune, train_data, val_data, test_data, device, example, model_dir,
          reports_dir, resume=False):
    """Prune and fine-tune at each ratio; rows of figures and test scores, ratio 0 = unpruned."""
    rows = [{"ratio": 0.0, **figures(source, example), **test_scores(source, test_data)}]
    for r in ratios:
        tag = f"sweep_{r:g}"
        net, _ = prune_and_finetune(source, r, round_to, inputs, tune, train_data, val_data, device,
                                    Path(model_dir) / f"{tag}.ckpt.pth", Path(reports_dir) / f"{tag}_log.csv", resume)
        rows.append({"ratio": r, **figures(net, example), **test_scores(net, test_data)})
    return rows


def format_sweep(rows):
    lines = [f"{'ratio':>6} {'params':>10} {'MACs':>12} {'lat b1 ms':>10} {'img/s b64':>10} {'acc':>7} {'macroF1':>8}"]
    for row in rows:
        lines.append(f"{row['ratio']:>6.2f} {row['params']:>10,} {row['macs']:>12,} {row['batch1_ms']:>10.2f} "
                     f"{row['batch64_images_per_s']:>10.1f} {row['accuracy']:>7.4f} {row['macro_f1']:>8.4f}")
    return "\n".join(lines) + "\n"


def plot_sweep(path, rows):
    """Test macro F1 against MACs and against batch-1 latency, one point per ratio."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((a, "macs", "MACs per image (M)"), (b, "batch1_ms", "CPU latency, batch 1 (ms)")):
        xs = [r[key] / (1e6 if key == "macs" else 1) for r in rows]
        ax.plot(xs, [r["macro_f1"] for r in rows], "o-")
        for x, r in zip(xs, rows):
            ax.annotate(f"{r['ratio']:g}", (x, r["macro_f1"]), textcoords="offset points", xytext=(4, 4))
        ax.set(xlabel=label, ylabel="test macro F1", title=f"macro F1 vs {label.split(' per')[0].split(',')[0]}")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    files.save_with(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"), suffix=".png")
    plt.close(fig)


def write_sweep(reports, rows):
    """reports/prune_sweep.{json,txt,png}."""
    files.write_text(Path(reports) / "prune_sweep.json", json.dumps(rows, indent=2))
    files.write_text(Path(reports) / "prune_sweep.txt", format_sweep(rows))
    plot_sweep(Path(reports) / "prune_sweep.png", rows)
    print(format_sweep(rows), end="")


def report(source, net, example, src, dest, test_data, test_dir, reports, device, ratio, round_to, history):
    """Stage 5's report: size and speed figures before and after, structure dumps, the pruned
    model's stage-4 test report, reports/prune_summary.{json,txt}; returns the summary."""
    reports = Path(reports)
    before, after = figures(source, example), figures(net, example)
    files.write_text(reports / "prune_structure_before.txt", str(source) + "\n")
    files.write_text(reports / "prune_structure_after.txt", str(net) + "\n")
    # sizes on disk of the two model files, both in the same weights-only format
    before["file_bytes"], after["file_bytes"] = Path(src).stat().st_size, Path(dest).stat().st_size
    # the unpruned model's scores: stage 4's report when it was made for this model file and test
    # split (predicting DS2 again takes 10+ minutes on a CPU), else predicted here
    m_before = evaluation.reported_scores(reports / "test_result.json", evaluation.provenance(src, test_dir),
                                          len(test_data))
    m_before = ({**m_before, "scores_from": "reports/test_result.json (stage 4)"} if m_before else
                {**test_scores(source, test_data), "scores_from": "predicted by stage 5 (CPU)"})
    m_after, _ = evaluation.evaluate_and_report(net, test_data.classes, test_data, reports, "test_result_pruned",
                                                device, evaluation.provenance(dest, test_dir))
    summary = {"ratio": ratio, "round_to": round_to, "importance": "L1 magnitude (p=1)",
               "before": {**before, **m_before},
               "after": {**after, "accuracy": m_after["accuracy"], "macro_f1": m_after["macro_f1"]},
               "fine_tuning": history, "threads": torch.get_num_threads()}
    files.write_text(reports / "prune_summary.json", json.dumps(summary, indent=2))
    files.write_text(reports / "prune_summary.txt", format_summary(summary))
    print(format_summary(summary), end="")
    return summary
