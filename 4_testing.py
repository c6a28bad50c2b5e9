"""Stage 4: evaluate a trained model on test_images and write the test report.

The report: confusion matrix, per-class P/R/F1, AAMI Se/+P/Sp, macro and weighted F1, images/s
and batch-1 latency; reports/errors/: a gallery of the misclassified images (index.html, errors.csv).

    python 4_testing.py [--model FILE] [--data DIR] [--name test_result]

The model defaults to stage 3's (artifacts.trained_model); stage 5 writes the same report for
the pruned model.
"""
import Class_Dataset as dataset  # the layout's dataset module
import Class_Model as model  # the layout's model module
from ecg import config, evaluation, split, training
from ecg.errors import main_guard


def get_args_parser():
    p = config.parser(__doc__.splitlines()[0])
    p.add_argument("--model", help=f"model file (default: {config.default_artifact('trained_model')})")
    config.flag(p, "--data", "paths.test_dir", help="test folder")
    p.add_argument("--name", default="test_result",
                   help="report name: reports/NAME.txt, .json and a confusion matrix (default: %(default)s)")
    config.flag(p, "--device", "train.device", help="auto, cpu, cuda, cuda:1, ...")
    config.flag(p, "--errors-per-pair", "test.errors_per_pair",
                help="reports/errors/: at most this many misclassified images per (true, predicted) pair; 0 = none")
    return p


@main_guard
def main(argv=None):
    args = get_args_parser().parse_args(argv)
    cfg = config.load(args)
    device, _ = training.start(cfg["train"], processes=False)
    path = args.model or cfg.artifact("trained_model")
    net, meta = model.load(path)
    # the run's own test folder must be one split with its train/val folders (a test set from
    # another split may hold the model's training beats); a folder given with --data is the user's
    _, _, test_dir = split.checked_dirs(cfg, needed=("test",) if args.data else split.SPLITS)
    data = dataset.ScalogramDataset(test_dir, classes=meta["classes"],
                                    rr_features=meta.get("rr_features"))
    _, logits = evaluation.evaluate_and_report(net, meta["classes"], data, cfg.path("reports_dir"), args.name, device,
                                               evaluation.provenance(path, test_dir))
    per_pair = cfg["test"]["errors_per_pair"]
    if per_pair > 0:
        labels = {c["name"]: c["label"] for c in cfg.scheme["classes"]}
        folder = cfg.path("reports_dir") / "errors"
        n = evaluation.write_error_gallery(folder, data.paths, data.targets.numpy(), logits, meta["classes"], per_pair,
                                           labels)
        print(f"{n} misclassified test images -> {folder / 'index.html'}")


if __name__ == "__main__":
    main()
