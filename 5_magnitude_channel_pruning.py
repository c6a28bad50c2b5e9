"""Stage 5: L1-magnitude channel pruning of the trained model + fine-tuning, before/after figures.

    python 5_magnitude_channel_pruning.py [--ratio 0.5] [--round-to 8] [--resume]
    python 5_magnitude_channel_pruning.py --sweep 0.1 0.3 0.5 0.7      # macro F1 vs MACs/latency

Writes model_save/ecg_model_compact.pth (weights + layer shapes; loads with weights_only=True),
reports/prune_summary.{txt,json}, structure dumps, and the stage-4 test report of the pruned
model (reports/test_result_pruned.*).
"""
import copy
import json
from pathlib import Path

import torch

from ecg import config, dataset, evaluation, files, model, pruning, training
from ecg.errors import UserError, main_guard


def figures(net, example):
    fig = pruning.size_figures(net)
    fig.update(evaluation.time_model(evaluation.torch_forward(net), example))
    return fig


def prune_and_finetune(source, meta, ratio, round_to, cfg, train_data, val_data, device, tag, resume):
    net = pruning.prune(copy.deepcopy(source), ratio, round_to or None, meta["input_size"][-1])
    p = cfg["prune"]
    history, best = training.fit(net, train_data, val_data, cfg["train"], device,
                                 cfg.path("model_dir") / f"{tag}.ckpt.pth", cfg.path("reports_dir") / f"{tag}_log.csv",
                                 resume=resume, lr=p["lr"], epochs=p["epochs"], step_size=0, gamma=1.0,
                                 desc=f"fine-tune r={ratio}")
    net.load_state_dict(best["state_dict"])
    return net.cpu().eval(), history


@main_guard
def main():
    p = config.parser(__doc__.splitlines()[0])
    p.add_argument("--model", help="trained model (default: model_save/ecg_model.pth)")
    p.add_argument("--ratio", type=float, help="channel pruning ratio in (0, 1) (prune.ratio)")
    p.add_argument("--round-to", type=int, help="channel multiple, 0 = off (prune.round_to)")
    p.add_argument("--epochs", type=int, help="fine-tuning epochs (prune.epochs)")
    p.add_argument("--sweep", type=float, nargs="+", help="ratios to compare (prune.sweep)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted fine-tuning")
    args = p.parse_args()
    cfg = config.load(args)
    for key, value in (("ratio", args.ratio), ("round_to", args.round_to), ("epochs", args.epochs),
                       ("sweep", args.sweep)):
        cfg.set(f"prune.{key}", value)
    pc = cfg["prune"]
    for r in pc["sweep"] or [pc["ratio"]]:
        if not 0 < r < 1:
            raise UserError(f"pruning ratio {r} is outside (0, 1)")
    t = cfg["train"]
    training.setup(t["seed"], t["threads"])
    device = training.pick_device(t["device"])
    src = Path(args.model) if args.model else cfg.path("model_dir") / "ecg_model.pth"
    source, meta = model.load(src)
    source.eval()
    classes = meta["classes"]
    reports, out_dir = cfg.path("reports_dir"), cfg.path("model_dir")
    files.check_writable(reports)
    files.check_writable(out_dir)

    train_data = dataset.ScalogramDataset(cfg.path("train_dir"), classes=classes)
    val_data = dataset.ScalogramDataset(cfg.path("val_dir"), classes=classes)
    test_data = dataset.ScalogramDataset(cfg.path("test_dir"), classes=classes)
    example = test_data[0][0].unsqueeze(0)

    if pc["sweep"]:
        return sweep(source, meta, cfg, train_data, val_data, test_data, device, example, args.resume)

    before = figures(source, example)
    files.write_text(reports / "prune_structure_before.txt", str(source) + "\n")
    net, history = prune_and_finetune(source, meta, pc["ratio"], pc["round_to"], cfg, train_data, val_data,
                                      device, "ecg_model_compact", args.resume)
    after = figures(net, example)
    files.write_text(reports / "prune_structure_after.txt", str(net) + "\n")
    model.save(out_dir / "ecg_model_compact.pth", net.state_dict(), classes, meta["input_size"][-1],
               shapes=model.layer_shapes(net), pruning_ratio=pc["ratio"], round_to=pc["round_to"])
    # sizes on disk of the two model files, both in the same weights-only format
    before["file_bytes"], after["file_bytes"] = src.stat().st_size, (out_dir / "ecg_model_compact.pth").stat().st_size

    m_before = evaluation.metrics(test_data.targets.numpy(),
                                  training.predict(source, test_data, torch.device("cpu")).argmax(1).numpy(), classes)
    m_after, _ = evaluation.evaluate_and_report(net, classes, test_data, reports, "test_result_pruned", device,
                                                {"model": str(out_dir / "ecg_model_compact.pth")})
    summary = {"ratio": pc["ratio"], "round_to": pc["round_to"], "importance": "L1 magnitude (p=1)",
               "before": {**before, "accuracy": m_before["accuracy"], "macro_f1": m_before["macro_f1"]},
               "after": {**after, "accuracy": m_after["accuracy"], "macro_f1": m_after["macro_f1"]},
               "fine_tuning": history, "threads": torch.get_num_threads()}
    files.write_text(reports / "prune_summary.json", json.dumps(summary, indent=2))
    files.write_text(reports / "prune_summary.txt", format_summary(summary))
    print(format_summary(summary))


def format_summary(s):
    b, a = s["before"], s["after"]
    rows = [("parameters", "params", "{:,.0f}"), ("MACs (1x1x100x100)", "macs", "{:,.0f}"),
            ("file size (bytes)", "file_bytes", "{:,.0f}"), ("CPU latency, batch 1 (ms)", "batch1_ms", "{:.2f}"),
            ("CPU throughput, batch 64 (img/s)", "batch64_images_per_s", "{:.1f}"),
            ("test accuracy", "accuracy", "{:.4f}"), ("test macro F1", "macro_f1", "{:.4f}")]
    lines = [f"L1-magnitude channel pruning, ratio {s['ratio']}, round_to {s['round_to']} "
             f"(CPU timings: median, {s['threads']} threads)", f"{'':34s}{'unpruned':>16s}{'pruned':>16s}{'ratio':>9s}"]
    for label, key, fmt in rows:
        lines.append(f"{label:34s}{fmt.format(b[key]):>16s}{fmt.format(a[key]):>16s}{a[key] / b[key]:>9.3f}")
    return "\n".join(lines) + "\n"


def sweep(source, meta, cfg, train_data, val_data, test_data, device, example, resume):
    reports = cfg.path("reports_dir")
    base = figures(source, example)
    m0 = evaluation.metrics(test_data.targets.numpy(),
                            training.predict(source, test_data, torch.device("cpu")).argmax(1).numpy(), meta["classes"])
    rows = [{"ratio": 0.0, **base, "macro_f1": m0["macro_f1"], "accuracy": m0["accuracy"]}]
    for r in cfg["prune"]["sweep"]:
        net, _ = prune_and_finetune(source, meta, r, cfg["prune"]["round_to"], cfg, train_data, val_data, device,
                                    f"sweep_{r:g}", resume)
        m = evaluation.metrics(test_data.targets.numpy(),
                               training.predict(net, test_data, torch.device("cpu")).argmax(1).numpy(), meta["classes"])
        rows.append({"ratio": r, **figures(net, example), "macro_f1": m["macro_f1"], "accuracy": m["accuracy"]})
    files.write_text(reports / "prune_sweep.json", json.dumps(rows, indent=2))
    lines = [f"{'ratio':>6} {'params':>10} {'MACs':>12} {'lat b1 ms':>10} {'img/s b64':>10} {'acc':>7} {'macroF1':>8}"]
    for row in rows:
        lines.append(f"{row['ratio']:>6.2f} {row['params']:>10,} {row['macs']:>12,} {row['batch1_ms']:>10.2f} "
                     f"{row['batch64_images_per_s']:>10.1f} {row['accuracy']:>7.4f} {row['macro_f1']:>8.4f}")
    files.write_text(reports / "prune_sweep.txt", "\n".join(lines) + "\n")
    print("\n".join(lines))
    plot_sweep(reports / "prune_sweep.png", rows)


def plot_sweep(path, rows):
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


if __name__ == "__main__":
    main()
