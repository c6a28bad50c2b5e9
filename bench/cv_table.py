"""One markdown table of cross-validation runs (ecg/crossval.py summaries), side by side.

    .venv/bin/python bench/cv_table.py runs/cv/*/cv_summary.json [--copy-to docs/results/new_patients/cv]

Each row is one run at its chosen epoch (the best pooled out-of-fold macro F1 over N, S, V):
macro F1 over N,S,V and N,S,V,F, accuracy, per-class F1, the records with more than 10 % of
their N beats called V or F, and the seconds per training epoch on this machine. --copy-to
keeps the summaries (a few kB each) beside the table, so the figures can be checked later.
"""
import argparse
import json
import shutil
from pathlib import Path


def row(s):
    e = str(s["chosen_epoch"])
    b = s["by_epoch"][e]
    pc = b["per_class"]
    f1 = " / ".join(f"{pc[c]['f1']:.3f}" for c in ("N", "S", "V", "F") if c in pc)
    secs = s.get("seconds_per_epoch")
    over = b.get("records_over_10pct_n_as_vf", [])
    return (f"| {s['name']} | {e} of {len(s['by_epoch'])} | {b['macro_f1_nsv']:.4f} | {b['macro_f1']:.4f} | "
            f"{b['accuracy']:.4f} | {f1} | {len(over)} ({' '.join(over)}) | "
            f"{'-' if secs is None else f'{secs:.0f}'} |")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("summaries", nargs="+", help="cv_summary.json files")
    p.add_argument("--copy-to", help="folder to copy each summary into, as <run name>.json")
    args = p.parse_args()
    runs = [json.loads(Path(f).read_text()) for f in args.summaries]
    print("| run | epoch (chosen of run) | macro F1 N,S,V | macro F1 N,S,V,F | accuracy | F1 N / S / V / F "
          "| records > 10 % N->V/F | s / epoch |")
    print("|---|---|---|---|---|---|---|---|")
    for s in sorted(runs, key=lambda s: -s["by_epoch"][str(s["chosen_epoch"])]["macro_f1_nsv"]):
        print(row(s))
    if args.copy_to:
        dest = Path(args.copy_to)
        dest.mkdir(parents=True, exist_ok=True)
        for f, s in zip(args.summaries, runs):
            shutil.copyfile(f, dest / f"{s['name']}.json")


if __name__ == "__main__":
    main()
