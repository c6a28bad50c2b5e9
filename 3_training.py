"""Stage 4a: train EfficientNet-B0 on train_images, validate on val_images.

    python 3_training.py [--epochs N] [--resume]

Saves model_save/ecg_model.pth (best-on-validation weights; loads with weights_only=True), a
per-epoch checkpoint for --resume, reports/train_log.csv and reports/training_curves.png.
"""
import json
import time

from ecg import config, dataset, files, model, training
from ecg.errors import UserError, main_guard


@main_guard
def main():
    p = config.parser(__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--resume", action="store_true", help="continue from the last epoch checkpoint")
    args = p.parse_args()
    cfg = config.load(args)
    for key in ("epochs", "batch_size", "lr", "device"):
        cfg.set(f"train.{key}", getattr(args, key))
    t = cfg["train"]
    if t["epochs"] < 1:
        raise UserError(f"train.epochs = {t['epochs']}: at least 1 epoch is needed")
    training.setup(t["seed"], t["threads"])
    device = training.pick_device(t["device"])

    train_data = dataset.ScalogramDataset(cfg.path("train_dir"))
    val_data = dataset.ScalogramDataset(cfg.path("val_dir"), classes=train_data.classes)
    out_dir, reports = cfg.path("model_dir"), cfg.path("reports_dir")
    files.check_writable(out_dir)
    files.check_writable(reports)
    print(f"classes {train_data.classes}, train {len(train_data)}, val {len(val_data)}, device {device}")

    net = model.build_model(len(train_data.classes))
    t0 = time.perf_counter()
    history, best = training.fit(net, train_data, val_data, t, device, out_dir / "ecg_model.ckpt.pth",
                                 reports / "train_log.csv", resume=args.resume)
    model.save(out_dir / "ecg_model.pth", best["state_dict"], train_data.classes,
               best_epoch=best["epoch"], val_acc=best["val_acc"])
    training.plot_history(reports / "training_curves.png", history, "training")
    files.write_text(reports / "train_summary.json", json.dumps(
        {"device": str(device), "epochs": len(history), "best_epoch": best["epoch"], "best_val_acc": best["val_acc"],
         "seconds_this_run": time.perf_counter() - t0, "history": history}, indent=2))
    print(f"saved {out_dir / 'ecg_model.pth'} (epoch {best['epoch']}, val acc {best['val_acc']:.4f})")


if __name__ == "__main__":
    main()
