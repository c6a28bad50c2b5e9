"""One headline figure per stage, read back from the report files a pipeline run wrote.

    python -m ecg.summary --workdir runs/quick        # what `make demo` prints at the end

Only files that exist are summarised, so a partial run shows what it has.
"""
import json
import sys

from . import config
from .errors import main_guard


def _json(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _scores(m):
    return f"accuracy {m['accuracy']:.4f}, macro F1 {m['macro_f1']:.4f} on {sum(r['support'] for r in m['per_class'].values())} beats"


def lines(cfg):
    """(stage, headline) for every stage whose reports are in cfg's reports folder."""
    rep = cfg.path("reports_dir")
    out = []
    split = _json(rep / "split_summary.json")
    if split:
        n = {s: sum(c.values()) for s, c in split["counts"].items()}
        shared = len(split["records_shared_train_test"])
        out.append(("1-2 data", f"{split['images']} beats -> train {n['train']} / val {n['val']} / test {n['test']} "
                                f"({split['mode']} split, {shared} records in both train and test)"))
    train = _json(rep / "train_summary.json")
    if train:
        out.append(("3 training", f"{train['epochs']} epochs, best epoch {train['best_epoch']}, "
                                  f"val accuracy {train['best_val_acc']:.4f}"))
    for stage, name in (("4 testing", "test_result"), ("5 pruned", "test_result_pruned"),
                        ("6 QAT (W8A8 sim)", "test_result_qat")):
        m = _json(rep / f"{name}.json")
        if m:
            out.append((stage, _scores(m)))
    prune = _json(rep / "prune_summary.json")
    if prune:
        b, a = prune["before"], prune["after"]
        out.append(("5 pruning", f"MACs {b['macs'] / 1e6:.1f} M -> {a['macs'] / 1e6:.1f} M, "
                                 f"params {b['params'] / 1e6:.2f} M -> {a['params'] / 1e6:.2f} M"))
    onnx = _json(rep / "onnx_summary.json")
    if onnx:
        for r in onnx.get("results", []):
            if "accuracy" in r:
                out.append(("7 ONNX", f"{r.get('variant', r.get('name', '?'))}: accuracy {r['accuracy']:.4f}"
                            + (f", agreement {r['agreement']:.4f}" if isinstance(r.get("agreement"), float) else "")))
    for path in sorted(rep.glob("jetson_*.txt")):
        lines_ = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
        # the headline of a device run: its speed (or throughput) line, else its last line
        head = [ln for ln in lines_ if ln.startswith(("speed", "throughput"))] or lines_[-1:]
        if head:
            out.append(("device", f"{path.name}: {head[-1]}"))
    return sorted(out, key=lambda row: row[0][0])  # stage order (stable within a stage)


@main_guard
def main(argv=None):
    p = config.parser(__doc__.splitlines()[0])
    cfg = config.load(p.parse_args(argv))
    rows = lines(cfg)
    if not rows:
        print(f"no reports under {cfg.path('reports_dir')}", file=sys.stderr)
        return
    w = max(len(s) for s, _ in rows)
    print(f"Summary of {cfg.workdir}:")
    for stage, text in rows:
        print(f"  {stage:<{w}}  {text}")


if __name__ == "__main__":
    main()
