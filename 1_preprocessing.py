"""Stage 1: MIT-BIH records -> 100x100 CWT scalogram PNGs, one folder per class, + manifest.csv.

    python 1_preprocessing.py --data-dir /path/to/mitdb             # thesis config
    python 1_preprocessing.py --classes aami --records all          # inter-patient material
"""
import time

from ecg import config, preprocess, records
from ecg.errors import main_guard


def get_args_parser():
    p = config.parser(__doc__.splitlines()[0])
    p.add_argument("--data-dir", help="MIT-BIH folder (default: $MITDB_DIR, else paths.data_dir = "
                                      f"{config.default('paths.data_dir')}, downloaded there if missing)")
    p.add_argument("--records", nargs="+", metavar="R",
                   help="records to process, or 'all' (default: the class map's list, schemes.<name>.records)")
    config.flag(p, "--out", "paths.scalogram_dir", help="output folder")
    config.flag(p, "--classes", "preprocess.scheme", choices=list(config.default("schemes")),
                help="class map: one of the [schemes.*] of the config")
    config.flag(p, "--cwt-context", "preprocess.cwt_context", choices=["beat", "record"],
                help="CWT of each beat alone (thesis) or of the whole record")
    config.flag(p, "--workers", "preprocess.workers", help="processes, one record each; 0 = all cores")
    p.add_argument("--resample", action="store_true", help="resample records that are not at preprocess.fs")
    config.flag(p, "--png-compression", "preprocess.png_compression", choices=range(10), metavar="0-9",
                help="zlib level of the PNGs: 0 = stored, fastest; 1-9 smaller files, same pixels")
    p.add_argument("--force", action="store_true", help="redo records whose outputs already exist")
    return p


@main_guard
def main(argv=None):
    args = get_args_parser().parse_args(argv)
    cfg = config.load(args)

    folder = records.data_dir(cfg, args.data_dir)
    rec_list = cfg.scheme["records"] if args.records is None else args.records
    if rec_list == ["all"]:
        rec_list = records.available_records(folder)
    pp = cfg["preprocess"]
    records.check_records(folder, rec_list, pp["fs"], args.resample)

    out = cfg.path("scalogram_dir")
    t0 = time.perf_counter()
    n = preprocess.run(folder, rec_list, out, preprocess.settings_of(cfg, args.resample),
                       workers=pp["workers"], force=args.force, batch=pp["batch"],
                       png_level=pp["png_compression"])
    dt = time.perf_counter() - t0
    print(f"{n} scalograms from {len(rec_list)} records in {dt:.1f} s -> {out}")


if __name__ == "__main__":
    main()
