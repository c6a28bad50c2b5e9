"""A day-long recording on the device: peak memory and speed of batch mode (in blocks, the
default), of --stream (with its model process and without: --no-overlap), and of the whole
signal at once (--block-s 0, the path before blocks).

    python bench/long_recording.py [--hours 24] [--baseline-hours 2] [--onnx models/aami/ecg_model_float.onnx]

Builds the recording as the issue describes it: MIT-BIH record 119 repeated (48 x 30 min = 24 h
at 360 Hz, 31.2 M samples) written as a one-column CSV. Each mode runs jetson/infer_trt.py in
its own process (ONNX Runtime); peak memory is that process's maximum resident set (GNU time),
speed the device's own real-time factor (processing time: the signal's length over the time in
the beat engine and the model) and the wall time of the whole command (reading the CSV
included). The whole-signal baseline runs on the first --baseline-hours (its memory grows with
the recording); on that file the block mode's CSV must equal the baseline's byte for byte.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
MITDB = Path(os.environ.get("MITDB_DIR") or REPO / "data" / "mitdb")


def write_csv(path, hours):
    import wfdb

    x = wfdb.rdrecord(str(MITDB / "119"), channels=[0]).p_signal[:, 0]
    reps = int(round(hours * 3600 / (len(x) / 360.0)))
    block = "\n".join("{:.3f}".format(v) for v in x) + "\n"
    with open(path, "w") as f:
        for _ in range(reps):
            f.write(block)
    return reps * len(x)


def tree_rss_kb(pid):
    """Resident memory of a process and all its descendants now (kB; 0 once it has ended)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open("/proc/{}/status".format(p)) as f:
                total += next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
            for task in os.listdir("/proc/{}/task".format(p)):
                with open("/proc/{}/task/{}/children".format(p, task)) as f:
                    todo += [int(c) for c in f.read().split()]
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def run(csv, onnx, operator, out, *extra):
    """One device run: its report's speed, the wall time, and peak memory: the process's own maximum
    resident set (GNU time) and the largest sum over it and its children (the stream's model
    process), sampled every 20 ms."""
    cmd = ["/usr/bin/time", "-f", "MAXRSS %M", sys.executable, "infer_trt.py", "--backend", "onnxruntime",
           "--onnx", str(onnx), "--operator", str(operator), "--csv", str(csv), "--fs", "360", "--out", str(out),
           *extra]
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as so, tempfile.TemporaryFile("w+") as se:
        p = subprocess.Popen(cmd, cwd=REPO / "jetson", stdout=so, stderr=se, text=True)
        tree = 0
        while p.poll() is None:
            tree = max(tree, tree_rss_kb(p.pid))
            time.sleep(0.02)
        wall = time.perf_counter() - t0
        so.seek(0), se.seek(0)
        stdout, stderr = so.read(), se.read()
    if p.returncode != 0:
        sys.exit("failed: {}\n{}".format(" ".join(cmd), stderr[-2000:]))
    rss = int(re.search(r"MAXRSS (\d+)", stderr).group(1)) / 1024.0
    rt = float(re.search(r"(\d+)x real time", [l for l in stdout.splitlines() if l.startswith("speed")][0]).group(1))
    beats = int(re.search(r"beats\s+(\d+) labelled", stdout).group(1))
    return {"rss_mb": rss, "tree_mb": max(tree / 1024.0, rss), "realtime": rt, "wall_s": wall, "beats": beats}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--baseline-hours", type=float, default=2.0)
    ap.add_argument("--onnx", default=str(REPO / "models" / "aami" / "ecg_model_float.onnx"))
    ap.add_argument("--operator", default=str(REPO / "models" / "aami" / "cwt_operator.npz"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        day, short = tmp / "day.csv", tmp / "short.csv"
        n = write_csv(day, args.hours)
        write_csv(short, args.baseline_hours)
        rows = [("blocks (default)", args.hours, run(day, args.onnx, args.operator, tmp / "day_blocks.csv")),
                ("--stream", args.hours, run(day, args.onnx, args.operator, tmp / "day_stream.csv", "--stream")),
                ("--stream --no-overlap", args.hours,
                 run(day, args.onnx, args.operator, tmp / "day_stream_one.csv", "--stream", "--no-overlap")),
                ("whole signal (--block-s 0)", args.baseline_hours,
                 run(short, args.onnx, args.operator, tmp / "short_whole.csv", "--block-s", "0")),
                ("blocks (default)", args.baseline_hours, run(short, args.onnx, args.operator, tmp / "short_blocks.csv"))]
        same = (tmp / "short_whole.csv").read_bytes() == (tmp / "short_blocks.csv").read_bytes()
        same_stream = (tmp / "day_stream.csv").read_bytes() == (tmp / "day_stream_one.csv").read_bytes()
    print("recording: MIT-BIH 119 repeated, {:.1f} h = {:,} samples at 360 Hz; model {}".format(
        args.hours, n, os.path.relpath(args.onnx, REPO)))
    print("{:<28} {:>6} {:>8} {:>9} {:>14} {:>12} {:>9}".format("mode", "hours", "beats", "peak MB",
                                                                 "with children", "x real time", "wall s"))
    for name, hours, r in rows:
        print("{:<28} {:>6.1f} {:>8,} {:>9.0f} {:>14.0f} {:>12.0f} {:>9.1f}".format(
            name, hours, r["beats"], r["rss_mb"], r["tree_mb"], r["realtime"], r["wall_s"]))
    day_blocks, day_stream, day_one, whole, short_blocks = (r for _, _, r in rows)
    print("blocks / stream speed (x real time): {:.2f}; without the model process {:.2f}; the two streams' CSVs "
          "identical: {}".format(day_blocks["realtime"] / day_stream["realtime"],
                                 day_blocks["realtime"] / day_one["realtime"], same_stream))
    print("blocks / whole signal on {:.1f} h: speed {:.2f}, peak memory {:.2f}; CSV identical: {}".format(
        args.baseline_hours, short_blocks["realtime"] / whole["realtime"], short_blocks["rss_mb"] / whole["rss_mb"],
        same))


if __name__ == "__main__":
    main()
