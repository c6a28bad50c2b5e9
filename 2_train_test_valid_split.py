"""Stage 2: scalograms -> train_images/ val_images/ test_images/<class>/ (80/10/10, stratified).

    python 2_train_test_valid_split.py               # thesis: random beat split (intra-patient)
    python 2_train_test_valid_split.py --by record   # no record in two splits (inter-patient)
"""
import json

from ecg import config, files, preprocess, split
from ecg.errors import main_guard


def get_args_parser():
    p = config.parser(__doc__.splitlines()[0])
    config.flag(p, "--by", "split.mode", choices=["random", "record"],
                help="random: beats drawn at random, stratified (thesis, intra-patient); record: no record in "
                     "two splits (inter-patient)")
    config.flag(p, "--src", "paths.scalogram_dir", help="scalogram folder written by stage 1")
    return p


@main_guard
def main(argv=None):
    args = get_args_parser().parse_args(argv)
    cfg = config.load(args)
    items = split.list_images(cfg.path("scalogram_dir"))
    assignment = split.assign(cfg, items, aami=preprocess.made_with(cfg)["scheme"] == "aami")  # stage 1's scheme
    dirs = {"train": cfg.path("train_dir"), "val": cfg.path("val_dir"), "test": cfg.path("test_dir")}
    files.check_writable(dirs["train"].parent)
    how = split.place(items, assignment, cfg.path("scalogram_dir"), dirs, prepare=lambda staged: (
        split.write_split_manifests(cfg.path("scalogram_dir"), items, assignment, staged)))
    split.write_split_csv(dirs["train"].parent / "split.csv", items, assignment)
    summary = split.summary(items, assignment, cfg["split"]["mode"])
    files.check_writable(cfg.path("reports_dir"))
    files.write_text(cfg.path("reports_dir") / "split_summary.json", json.dumps(summary, indent=2))
    config.record(cfg, "split")
    print(split.format_summary(summary))
    print(f"split written as {how}: {', '.join(str(d) for d in dirs.values())}")


if __name__ == "__main__":
    main()
