"""Build a TensorRT engine from the pipeline's ONNX export, on the device that will run it.

    python3 build_engine.py --onnx-dir model_save            # precision auto
    python3 build_engine.py --onnx-dir model_save --precision fp16 --out ecg_fp16.engine

auto = INT8 from ecg_model_quantized.onnx where the GPU has INT8 (Xavier, Orin, x86 GPUs),
else FP16 from ecg_model_float.onnx (Jetson Nano), else FP32. Works with TensorRT 8.2
(JetPack 4.6) and TensorRT 10/11. Writes the engine and ENGINE.json (TensorRT version, GPU,
precision, classes), which infer_trt.py checks before loading, and prints the trtexec command
that builds the same engine with NVIDIA's own tool, as a second opinion.
"""
import argparse
import os
import shlex
import sys
import time

if __name__ == "__main__" and not __package__:   # `cd jetson && python3 build_engine.py`: run as jetson.build_engine
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    import jetson  # noqa: F401,E402
    __package__ = "jetson"

from .common import (DeviceError, PRECISIONS, choose_precision, import_tensorrt, main_guard, onnx_classes,
                    onnx_rr_features, engine_meta_path, trt_major, write_json_atomic)


def gpu_info(trt, builder):
    """(name, has_fp16, has_int8). Builder flags where this TensorRT still has them, else the
    compute capability (FP16 from 5.3, INT8 from 6.1)."""
    name, cc = "unknown GPU", None
    try:
        import pycuda.autoinit  # noqa: F401  (creates the CUDA context)
        import pycuda.driver as cuda
        dev = cuda.Device(0)
        name, cc = dev.name(), dev.compute_capability()
    except ImportError:
        pass
    if hasattr(builder, "platform_has_fast_int8"):
        return name, bool(builder.platform_has_fast_fp16), bool(builder.platform_has_fast_int8)
    if cc is None:
        raise DeviceError("cannot tell this GPU's INT8/FP16 support: install pycuda")
    return name, cc >= (5, 3), cc >= (6, 1)


def make_network(trt, builder, strongly_typed):
    if trt_major(trt) >= 10:  # explicit batch is the only mode; STRONGLY_TYPED for Q/DQ networks
        flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
        return builder.create_network((1 << int(flag)) if strongly_typed and flag is not None else 0)
    return builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))


def set_workspace(trt, config, nbytes):
    if hasattr(config, "set_memory_pool_limit"):  # TensorRT >= 8.4
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, nbytes)
    else:  # TensorRT 8.2
        config.max_workspace_size = nbytes


def set_precision(trt, config, precision, strongly_typed):
    if strongly_typed:
        return  # the ONNX's own types decide
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)  # layers left in float may run in FP16
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)  # explicit Q/DQ: no calibrator needed


def trtexec_command(onnx_path, engine_path, precision, strongly_typed, trt_major_version, shapes, opt_batch,
                    max_batch, workspace_mb, timing_cache):
    """The trtexec line equivalent to this build. shapes: [(input name, dims after the batch)]."""
    def profile(batch):
        return ",".join("{}:{}".format(name, "x".join(str(d) for d in (batch,) + tuple(rest))) for name, rest in shapes)

    cmd = ["trtexec", "--onnx=" + onnx_path, "--saveEngine=" + engine_path, "--minShapes=" + profile(1),
           "--optShapes=" + profile(opt_batch), "--maxShapes=" + profile(max_batch)]
    if strongly_typed:  # TensorRT >= 10: the ONNX's own types (Q/DQ, FP16 tensors) decide
        cmd.append("--stronglyTyped")
    else:
        cmd += ["--fp16"] if precision in ("fp16", "int8") else []
        cmd += ["--int8"] if precision == "int8" else []  # explicit Q/DQ: no calibration cache
    cmd.append("--workspace={}".format(workspace_mb) if trt_major_version < 10
               else "--memPoolSize=workspace:{}".format(workspace_mb))  # --workspace is gone in TensorRT 10
    cmd += ["--timingCacheFile=" + timing_cache, "--dumpProfile", "--separateProfileRun"]
    return " ".join(shlex.quote(c) for c in cmd)


def parse_onnx(trt, network, logger, path):
    parser = trt.OnnxParser(network, logger)
    with open(path, "rb") as f:
        data = f.read()
    if not parser.parse(data):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise DeviceError("{}: TensorRT cannot parse it ({})".format(path, errors or "unknown error"))


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--onnx-dir", default="model_save", help="folder with the two ONNX files")
    p.add_argument("--qdq-onnx", help="default: ONNX_DIR/ecg_model_quantized.onnx")
    p.add_argument("--float-onnx", help="default: ONNX_DIR/ecg_model_float.onnx")
    p.add_argument("--precision", default="auto", choices=PRECISIONS)
    p.add_argument("--out", help="engine file (default: ecg_<precision>.engine)")
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--opt-batch", type=int, default=16)
    p.add_argument("--workspace-mb", type=int, default=512, help="builder workspace (the Nano has 4 GB shared)")
    p.add_argument("--timing-cache", default="timing.cache", help="reused across builds on this device")
    return p


@main_guard
def main(argv=None):
    args = get_args_parser().parse_args(argv)
    qdq = args.qdq_onnx or os.path.join(args.onnx_dir, "ecg_model_quantized.onnx")
    flt = args.float_onnx or os.path.join(args.onnx_dir, "ecg_model_float.onnx")
    qdq = qdq if os.path.isfile(qdq) else None
    flt = flt if os.path.isfile(flt) else None
    if not qdq and not flt:
        raise DeviceError("no ONNX found: {} and {} are missing".format(args.qdq_onnx or "ecg_model_quantized.onnx",
                                                                         args.float_onnx or "ecg_model_float.onnx"))

    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    gpu, has_fp16, has_int8 = gpu_info(trt, builder)
    precision, onnx_path = choose_precision(args.precision, has_fp16, has_int8, trt_major(trt), qdq, flt)
    strongly_typed = precision == "int8" and trt_major(trt) >= 10 or trt_major(trt) >= 11
    network = make_network(trt, builder, strongly_typed)
    parse_onnx(trt, network, logger, onnx_path)
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    shapes = [(t.name, tuple(t.shape)[1:]) for t in inputs]  # only the batch dimension is dynamic
    inp = [t for t in inputs if t.name != "rr"][0]  # the scalogram ('input', or 'image' beside 'rr')
    _, c, h, w = tuple(inp.shape)
    out = args.out or "ecg_{}.engine".format(precision)
    print("same build with NVIDIA's trtexec (second opinion):\n  " + trtexec_command(
        onnx_path, out, precision, strongly_typed, trt_major(trt), shapes, args.opt_batch, args.max_batch,
        args.workspace_mb, args.timing_cache))

    config = builder.create_builder_config()
    set_workspace(trt, config, args.workspace_mb << 20)
    set_precision(trt, config, precision, strongly_typed)
    profile = builder.create_optimization_profile()
    for name, rest in shapes:
        profile.set_shape(name, (1,) + rest, (args.opt_batch,) + rest, (args.max_batch,) + rest)
    config.add_optimization_profile(profile)
    cache_bytes = open(args.timing_cache, "rb").read() if os.path.isfile(args.timing_cache) else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, False)

    t0 = time.time()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise DeviceError("{}: TensorRT could not build an engine (see the messages above; on the Nano try "
                          "a smaller --workspace-mb or --max-batch)".format(onnx_path))
    seconds = time.time() - t0
    with open(out + ".tmp", "wb") as f:
        f.write(serialized)
    os.replace(out + ".tmp", out)
    with open(args.timing_cache + ".tmp", "wb") as f:
        f.write(config.get_timing_cache().serialize())
    os.replace(args.timing_cache + ".tmp", args.timing_cache)
    meta = {"tensorrt": trt.__version__, "gpu": gpu, "precision": precision, "onnx": os.path.abspath(onnx_path),
            "input": [c, h, w], "max_batch": args.max_batch, "classes": onnx_classes(onnx_path),
            "rr_features": onnx_rr_features(onnx_path)}
    write_json_atomic(engine_meta_path(out), meta)
    print("engine     {} ({:.1f} MB)".format(out, os.path.getsize(out) / 1e6))
    print("precision  {} from {}".format(precision, onnx_path))
    print("GPU        {} (FP16 {}, INT8 {}), TensorRT {}".format(gpu, has_fp16, has_int8, trt.__version__))
    print("input      {} N x {}x{}x{} (N = 1..{}, optimised for {})".format(inp.name, c, h, w, args.max_batch,
                                                                          args.opt_batch))
    print("output     {}".format(tuple(network.get_output(0).shape)))
    print("build time {:.1f} s".format(seconds))


if __name__ == "__main__":
    main()
