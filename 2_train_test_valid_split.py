"""Stage 2: scalograms -> train_images/ val_images/ test_images/<class>/ (80/10/10, stratified).

    python 2_train_test_valid_split.py               # thesis: random beat split (intra-patient)
    python 2_train_test_valid_split.py --by record   # no record in two splits (inter-patient)
"""
import json
from collections import Counter

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
    sp = cfg["split"]

    items = split.list_images(cfg.path("scalogram_dir"))
    if sp["mode"] == "record":
        aami = preprocess.made_with(cfg)["scheme"] == "aami"  # the scheme stage 1 used
        assignment = split.split_by_record(items, sp["random_state"], test_records=sp["ds2"] if aami else None,
                                           train_records=sp["ds1"] if aami else None)
    else:
        assignment = split.split_random(items, sp["test_size"], sp["random_state"])

    dirs = {"train": cfg.path("train_dir"), "val": cfg.path("val_dir"), "test": cfg.path("test_dir")}
    files.check_writable(dirs["train"].parent)
    how = split.place(items, assignment, cfg.path("scalogram_dir"), dirs, prepare=lambda staged: (
        split.write_split_manifests(cfg.path("scalogram_dir"), items, assignment, staged)))
    split.write_split_csv(dirs["train"].parent / "split.csv", items, assignment)

    recs, shared = split.shared_records(items, assignment)
    counts = {s: dict(sorted(Counter(c for (_, c, _), a in zip(items, assignment) if a == s).items()))
              for s in split.SPLITS}
    summary = {"mode": sp["mode"], "images": len(items), "counts": counts,
               "records": {s: sorted(r) for s, r in recs.items()},
               "records_shared_train_test": sorted(shared)}
    reports = cfg.path("reports_dir")
    reports.mkdir(parents=True, exist_ok=True)
    files.write_text(reports / "split_summary.json", json.dumps(summary, indent=2))
    config.record(cfg, "split")
    for s in split.SPLITS:
        print(f"{s:5s}: {sum(counts[s].values()):6d} images  {counts[s]}  records: {len(recs[s])}")
    print(f"records shared by train and test: {len(shared)}"
          + (" (intra-patient split: the test score overstates new-patient accuracy)" if shared else ""))
    print(f"split written as {how}: {', '.join(str(d) for d in dirs.values())}")


if __name__ == "__main__":
    main()
