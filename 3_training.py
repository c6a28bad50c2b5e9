"""Stage 3: train EfficientNet-B0 on train_images, validate on val_images.

    python 3_training.py [--epochs N] [--resume]
    torchrun --nproc_per_node=N 3_training.py ...     # data-parallel (README "Scaling out")

Saves the trained model (artifacts.trained_model, model_save/ecg_model.pth by default:
best-on-validation weights; loads with weights_only=True), a per-epoch checkpoint for --resume,
reports/train_log.csv and reports/training_curves.png.
"""
import json
import time


import Class_Dataset as dataset  # the layout's dataset module
import Class_Model as model  # the layout's model module
from ecg import config, distributed, files, split, training
from ecg.errors import UserError, main_guard


def get_args_parser():
    p = config.parser(__doc__.splitlines()[0])
    config.flag(p, "--epochs", "train.epochs", help="training epochs")
    config.flag(p, "--batch-size", "train.batch_size", help="images per training step")
    config.flag(p, "--lr", "train.lr", help="initial learning rate (Adam; StepLR train.step_size/gamma)")
    config.flag(p, "--device", "train.device", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--resume", action="store_true", help="continue from the last epoch checkpoint")
    return p


@main_guard
def main(argv=None):
    args = get_args_parser().parse_args(argv)
    cfg = config.load(args)
    t = cfg["train"]
    if t["epochs"] < 1:
        raise UserError(f"train.epochs = {t['epochs']}: at least 1 epoch is needed")
    out_dir, reports, dest = cfg.path("model_dir"), cfg.path("reports_dir"), cfg.artifact("trained_model")
    device, main_process = training.start(t, out_dir, reports)  # under torchrun only rank 0 writes and prints
    rr = model.rr_feature_names(cfg)
    train_dir, val_dir, _ = split.checked_dirs(cfg, needed=("train", "val"))
    train_data = dataset.ScalogramDataset(train_dir, rr_features=rr, progress=main_process)
    val_data = dataset.ScalogramDataset(val_dir, classes=train_data.classes, rr_features=rr, progress=main_process)
    if main_process:
        print(f"classes {train_data.classes}, train {len(train_data)}, val {len(val_data)}, device {device}, "
              f"processes {distributed.world_size()}")

    channels = dataset.channels(train_data.images[0])   # 2: beat + the patient's template (stage 1)
    net = model.build_model(len(train_data.classes), cfg["model"]["arch"], rr_features=rr, in_channels=channels,
                            image_input=cfg["model"]["image_input"])
    if rr:
        model.standardise_rr(net, train_data.rr)
    t0 = time.perf_counter()
    history, best = training.fit(net, train_data, val_data, t, device, dest.with_suffix(".ckpt.pth"),
                                 reports / "train_log.csv", resume=args.resume)
    if not main_process:
        return distributed.shutdown()
    model.save(dest, best["state_dict"], train_data.classes, rr_features=rr, arch=cfg["model"]["arch"], channels=channels,
               image_input=cfg["model"]["image_input"],
               best_epoch=best["epoch"], val_acc=best["val_acc"], val_macro_f1=best.get("val_macro_f1"))
    training.plot_history(reports / "training_curves.png", history, "training")
    files.write_text(reports / "train_summary.json", json.dumps(
        {"device": str(device), "processes": distributed.world_size(), "epochs": len(history), "best_epoch": best["epoch"], "best_val_acc": best["val_acc"],
         "seconds_this_run": time.perf_counter() - t0, "history": history}, indent=2))
    config.record(cfg, "train")
    print(f"saved {dest} (epoch {best['epoch']}, val acc {best['val_acc']:.4f})")
    distributed.shutdown()


if __name__ == "__main__":
    main()
