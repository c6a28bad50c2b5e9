"""Stage 4b: evaluate a model on test_images: confusion matrix, per-class P/R/F1, AAMI Se/+P/Sp,
macro and weighted F1, images/s and batch-1 latency.

    python 4_testing.py [--model model_save/ecg_model.pth] [--data DIR] [--name test_result]
"""
from ecg import config, dataset, evaluation, model, training
from ecg.errors import main_guard


@main_guard
def main():
    p = config.parser(__doc__.splitlines()[0])
    p.add_argument("--model", help="model file (default: model_save/ecg_model.pth)")
    p.add_argument("--data", help="test folder (default: paths.test_dir)")
    p.add_argument("--name", default="test_result", help="report name under reports/")
    p.add_argument("--device")
    args = p.parse_args()
    cfg = config.load(args)
    cfg.set("train.device", args.device)
    training.setup(cfg["train"]["seed"], cfg["train"]["threads"])
    device = training.pick_device(cfg["train"]["device"])
    path = args.model or cfg.path("model_dir") / "ecg_model.pth"
    net, meta = model.load(path)
    data = dataset.ScalogramDataset(args.data or cfg.path("test_dir"), classes=meta["classes"])
    evaluation.evaluate_and_report(net, meta["classes"], data, cfg.path("reports_dir"), args.name, device, {"model": str(path)})


if __name__ == "__main__":
    main()
