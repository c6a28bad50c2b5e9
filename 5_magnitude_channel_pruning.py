"""Stage 5: L1-magnitude channel pruning of the trained model + fine-tuning, before/after figures.

    python 5_magnitude_channel_pruning.py [--ratio 0.5] [--round-to 8] [--resume]
    python 5_magnitude_channel_pruning.py --sweep 0.1 0.3 0.5 0.7      # macro F1 vs MACs/latency
    torchrun --nproc_per_node=N 5_magnitude_channel_pruning.py ...    # data-parallel fine-tuning

A model with RR features (config model.rr_features) is pruned in its image path only: the fusion
head (rr_layer and the classifier) is kept whole, the classifier's input follows the pruned
image features; fine-tuning reads the RR features from the split folders' manifests.
Under torchrun every process prunes the same model identically (the pruning is deterministic),
fine-tunes under DistributedDataParallel (ecg/training.fit) and only rank 0 measures and writes.

Writes the pruned model (artifacts.pruned_model: weights + layer shapes; loads with
weights_only=True), reports/prune_summary.{txt,json}, structure dumps, and the stage-4 test
report of the pruned model (reports/test_result_pruned.*). The work is done in ecg/pruning.py.
"""
from pathlib import Path

import torch

import Class_Dataset as dataset  # the layout's dataset module
import Class_Model as model  # the layout's model module
from ecg import config, distributed, pruning, split, training
from ecg.errors import main_guard


def get_args_parser():
    p = config.parser(__doc__.splitlines()[0])
    p.add_argument("--model", help=f"trained model (default: {config.default_artifact('trained_model')})")
    config.flag(p, "--ratio", "prune.ratio", help="fraction of channels removed, in (0, 1)")
    config.flag(p, "--round-to", "prune.round_to", help="keep channel counts multiples of this; 0 = off")
    config.flag(p, "--epochs", "prune.epochs", help="fine-tuning epochs")
    config.flag(p, "--lr", "prune.lr", help="fine-tuning learning rate (Adam)")
    config.flag(p, "--batch-size", "prune.batch_size", help="fine-tuning batch size")
    config.flag(p, "--sweep", "prune.sweep", type=float, nargs="+", metavar="RATIO",
                help="prune and fine-tune at each of these ratios and compare them instead")
    config.flag(p, "--device", "train.device", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--resume", action="store_true", help="continue an interrupted fine-tuning")
    return p


@main_guard
def main(argv=None):
    args = get_args_parser().parse_args(argv)
    cfg = config.load(args)
    pc, tune = cfg["prune"], cfg.section("prune")
    pruning.check_ratios(pc["sweep"] or [pc["ratio"]])
    reports, out_dir = cfg.path("reports_dir"), cfg.path("model_dir")
    device, main_process = training.start(tune, reports, out_dir)  # under torchrun only rank 0 measures and writes
    src = Path(args.model) if args.model else cfg.artifact("trained_model")
    source, meta = model.load(src)
    source.eval()
    classes, rr = meta["classes"], meta.get("rr_features")
    train_dir, val_dir, test_dir = split.checked_dirs(cfg)
    train_data, val_data, test_data = (dataset.ScalogramDataset(d, classes=classes, rr_features=rr,
                                                                progress=main_process)
                                       for d in (train_dir, val_dir, test_dir))
    example = dataset.take(test_data, torch.tensor([0]))[0]  # one real input (an (image, rr) pair for RR)
    inputs = model.example_inputs(meta)  # what torch-pruning traces the model with
    if pc["sweep"]:
        rows = pruning.sweep(source, pc["sweep"], pc["round_to"], inputs, tune, train_data, val_data, test_data,
                             device, example, out_dir, reports, args.resume)  # every process alike
        distributed.shutdown()
        return pruning.write_sweep(reports, rows) if main_process else None

    dest = cfg.artifact("pruned_model")
    net, history = pruning.prune_and_finetune(source, pc["ratio"], pc["round_to"], inputs, tune, train_data, val_data,
                                              device, dest.with_suffix(".ckpt.pth"), reports / f"{dest.stem}_log.csv",
                                              args.resume)
    distributed.shutdown()  # the rest is rank 0's alone, as one process
    if not main_process:
        return
    model.save(dest, net.state_dict(), classes, meta["input_size"][-1], shapes=model.layer_shapes(net),
               rr_features=rr, arch=meta["arch"], channels=meta["input_size"][0],
               image_input=meta.get("image_input", "as_is"), pruning_ratio=pc["ratio"], round_to=pc["round_to"])
    pruning.report(source, net, example, src, dest, test_data, test_dir, reports, device, pc["ratio"],
                   pc["round_to"], history)
    config.record(cfg, "prune")


if __name__ == "__main__":
    main()
