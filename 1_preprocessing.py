"""Stage 1: MIT-BIH records -> 100x100 CWT scalogram PNGs, one folder per class, + manifest.csv.

    python 1_preprocessing.py --data-dir ../shared/mitdb            # thesis config
    python 1_preprocessing.py --classes aami --records all          # inter-patient material
"""
import time

from ecg import config, preprocess, records
from ecg.errors import main_guard


@main_guard
def main():
    p = config.parser(__doc__.splitlines()[0])
    p.add_argument("--data-dir", help="MIT-BIH folder (default: $MITDB_DIR, else paths.data_dir, downloaded if missing)")
    p.add_argument("--records", nargs="+", metavar="R", help="records to process, or 'all'")
    p.add_argument("--out", help="output folder (default: paths.scalogram_dir)")
    p.add_argument("--classes", choices=["thesis", "aami"], help="class map (preprocess.scheme)")
    p.add_argument("--cwt-context", choices=["beat", "record"], help="CWT of each beat alone (thesis) or of the whole record")
    p.add_argument("--workers", type=int, help="processes (0 = all cores)")
    p.add_argument("--resample", action="store_true", help="resample records that are not at preprocess.fs")
    p.add_argument("--png-compression", type=int, choices=range(10), metavar="0-9",
                   help="zlib level of the PNGs: 0 = stored, fastest (default); 1-9 smaller files, same pixels")
    p.add_argument("--force", action="store_true", help="redo records whose outputs already exist")
    args = p.parse_args()
    cfg = config.load(args)
    cfg.set("preprocess.scheme", args.classes)
    cfg.set("preprocess.cwt_context", args.cwt_context)
    cfg.set("preprocess.workers", args.workers)
    cfg.set("preprocess.png_compression", args.png_compression)
    if args.out:
        cfg.set("paths.scalogram_dir", args.out)

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
