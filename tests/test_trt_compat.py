"""ecg/trt_compat.py: TensorRT 8.2's ONNX parser rules on small hand-made graphs (onnx.helper),
each breaking one rule, and the stage-7 agreement rule on a tiny ONNX model. No data needed."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ecg import onnx_check, trt_compat
from ecg.errors import UserError


def qdq_conv(weight_int8=False, zp=0, zp_type=np.int8, scale_sign=1.0, axis=0, n_scales=4, opset=13,
             dims=("batch", 1, 8, 8), extra_nodes=(), extra_inits=(), three_inputs=True):
    """input -> Q/DQ (per tensor) -> Conv(weights: float -> Q -> DQ per channel, or int8 -> DQ) -> logits."""
    w = np.random.default_rng(0).normal(size=(4, 1, 3, 3)).astype(np.float32)
    wscale = np.full(n_scales, 0.02 * scale_sign, np.float32)
    inits = [numpy_helper.from_array(np.array(0.05, np.float32), "a_scale"),
             numpy_helper.from_array(np.array(0, np.int8), "a_zp"),
             numpy_helper.from_array(wscale, "w_scale"),
             numpy_helper.from_array(np.full(n_scales, zp, zp_type), "w_zp"), *extra_inits]
    nodes = [helper.make_node("QuantizeLinear", ["input", "a_scale", "a_zp"], ["x_q"], name="in_q"),
             helper.make_node("DequantizeLinear", ["x_q", "a_scale", "a_zp"], ["x_dq"], name="in_dq")]
    w_inputs = ["w_scale", "w_zp"] if three_inputs else ["w_scale"]
    if weight_int8:
        inits.append(numpy_helper.from_array(np.round(w / 0.02).astype(np.int8), "w_q"))
    else:
        inits.append(numpy_helper.from_array(w, "w"))
        nodes.append(helper.make_node("QuantizeLinear", ["w", *w_inputs], ["w_q"], name="w_quant", axis=axis))
    nodes += [helper.make_node("DequantizeLinear", ["w_q", *w_inputs], ["w_dq"], name="w_dequant", axis=axis),
              helper.make_node("Conv", ["x_dq", "w_dq"], ["conv"], name="conv", pads=[1, 1, 1, 1]),
              *extra_nodes]
    last = extra_nodes[-1].output[0] if extra_nodes else "conv"
    nodes.append(helper.make_node("Identity", [last], ["logits"], name="out"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(dims))],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4, 8, 8])],
                              inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def rules(m, **kw):
    return sorted({v.rule for v in trt_compat.violations(m, **kw)})


def test_ops_list_is_trt82_support_matrix():
    assert len(trt_compat.TRT82_OPS) == 129
    assert {"Conv", "QuantizeLinear", "DequantizeLinear", "Sigmoid", "Mul", "Gemm"} <= trt_compat.TRT82_OPS
    assert not {"ConvInteger", "DynamicQuantizeLinear", "MatMulInteger", "QLinearConv"} & trt_compat.TRT82_OPS


def test_tensorrt8_qdq_form_passes():
    m = qdq_conv()
    onnx.checker.check_model(m)
    assert trt_compat.violations(m) == []
    trt_compat.check(m, "m.onnx")  # no exception
    assert trt_compat.verdict(m) == "ok"


def test_int8_initializer_into_dq_fails_for_tensorrt8_only():
    m = qdq_conv(weight_int8=True)
    onnx.checker.check_model(m)
    assert rules(m) == ["int8-weights"]
    assert rules(m, allow_int8_weights=True) == []
    with pytest.raises(UserError, match=r"m\.onnx: .*node 'w_dequant' \(DequantizeLinear\): int8-weights"):
        trt_compat.check(m, "m.onnx")


@pytest.mark.parametrize("kwargs, rule, needle", [
    ({"zp": 3}, "qdq-zero-point", "w_dequant"),
    ({"zp_type": np.uint8}, "qdq-zero-point", "uint8"),
    ({"scale_sign": -1.0}, "qdq-scale", "positive"),
    ({"three_inputs": False}, "qdq-inputs", "three inputs"),
    ({"axis": 1, "n_scales": 1}, None, None),  # per-tensor weights: axis is irrelevant
    ({"axis": 1}, "per-channel", "axis 1"),
    ({"n_scales": 2}, "per-channel", "one per output channel"),
    ({"opset": 17}, "opset", "opset 17"),
    ({"dims": ("batch", 1, "h", 8)}, "dynamic-shape", "dimension 2"),
])
def test_each_rule(kwargs, rule, needle):
    found = trt_compat.violations(qdq_conv(**kwargs))
    if rule is None:
        assert found == []
        return
    assert {v.rule for v in found} == {rule}, found
    assert any(needle in str(v) for v in found), found


def test_unsupported_and_custom_ops():
    extra = [helper.make_node("Hardmax", ["conv"], ["hs"], name="hmax"),
             helper.make_node("MyOp", ["hs"], ["custom"], name="mine", domain="com.example")]
    found = trt_compat.violations(qdq_conv(extra_nodes=extra))
    assert [(v.where, v.rule) for v in found] == [("node 'hmax' (Hardmax)", "op"), ("node 'mine' (MyOp)", "op")]
    assert "com.example" in str(found[1])


def test_per_channel_on_activation_and_on_matmul():
    per_ch = [numpy_helper.from_array(np.full(4, 0.1, np.float32), "c_scale"),
              numpy_helper.from_array(np.zeros(4, np.int8), "c_zp"),
              numpy_helper.from_array(np.ones((4, 8), np.float32), "mm_w")]
    act = [helper.make_node("QuantizeLinear", ["conv", "c_scale", "c_zp"], ["c_q"], name="act_q", axis=1),
           helper.make_node("DequantizeLinear", ["c_q", "c_scale", "c_zp"], ["c_dq"], name="act_dq", axis=1)]
    found = trt_compat.violations(qdq_conv(extra_nodes=act, extra_inits=per_ch))
    assert {v.where for v in found} == {"node 'act_q' (QuantizeLinear)", "node 'act_dq' (DequantizeLinear)"}
    assert all(v.rule == "per-channel" and "activation" in v.detail for v in found)
    # per-channel along axis 0 of a MatMul weight (K x N): axis 0 is the input, not the output channel
    mm = [helper.make_node("QuantizeLinear", ["mm_w", "c_scale", "c_zp"], ["mm_q"], name="mm_q", axis=0),
          helper.make_node("DequantizeLinear", ["mm_q", "c_scale", "c_zp"], ["mm_dq"], name="mm_dq", axis=0),
          helper.make_node("MatMul", ["conv", "mm_dq"], ["mm"], name="matmul")]
    found = trt_compat.violations(qdq_conv(extra_nodes=mm, extra_inits=per_ch))
    assert [v.rule for v in found] == ["per-channel"] and "MatMul 'matmul'" in found[0].detail


def test_conv_weights_must_be_constant():
    m = qdq_conv()
    m.graph.input.append(helper.make_tensor_value_info("w2", TensorProto.FLOAT, [4, 4, 1, 1]))
    m.graph.node.insert(len(m.graph.node) - 1, helper.make_node("Conv", ["conv", "w2"], ["conv2"], name="conv2"))
    m.graph.node[-1].input[0] = "conv2"
    found = trt_compat.violations(m)
    assert [(v.where, v.rule) for v in found] == [("node 'conv2' (Conv)", "conv-weights")]


def test_int64_rules():
    shape_ok = numpy_helper.from_array(np.array([-1, 256], np.int64), "shape_ok")
    huge = numpy_helper.from_array(np.array([0, 2 ** 40], np.int64), "huge")
    extra = [helper.make_node("Reshape", ["conv", "shape_ok"], ["r"], name="reshape"),
             helper.make_node("Slice", ["r", "huge", "huge"], ["s"], name="slice")]
    found = trt_compat.violations(qdq_conv(extra_nodes=extra, extra_inits=[shape_ok, huge]))
    assert [(v.where, v.rule) for v in found] == [("constant 'huge'", "int64")] and "'slice'" in found[0].detail
    m = qdq_conv()
    m.graph.input.append(helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 7]))
    assert [(v.where, v.rule) for v in trt_compat.violations(m)] == [("graph input 'ids'", "int64")]


def test_second_input_with_batch_dimension_only_is_fine():
    """The checker is general over the model's inputs (e.g. RR features, N x 7)."""
    m = qdq_conv()
    m.graph.input.append(helper.make_tensor_value_info("rr", TensorProto.FLOAT, ["batch", 7]))
    assert trt_compat.violations(m) == []
    m.graph.input[-1].type.tensor_type.shape.dim[1].dim_param = "n_rr"
    assert rules(m) == ["dynamic-shape"]


def test_check_names_each_broken_rule_once():
    m = qdq_conv(zp=1, scale_sign=-1.0, opset=17)
    with pytest.raises(UserError) as e:
        trt_compat.check(m, "bad.onnx")
    msg = str(e.value)
    assert msg.startswith("bad.onnx: TensorRT 8.2 would not parse it: 1 opset violation, first: model: opset: ")
    assert "2 qdq-scale violations, first: node 'w_quant' (QuantizeLinear): qdq-scale:" in msg
    assert "2 qdq-zero-point violations, first: node 'w_quant'" in msg and msg.count("first:") == 3


def tiny_classifier(path, weight):
    """input (N, 1, 2, 2) -> Flatten -> Gemm -> logits (N, 2)."""
    nodes = [helper.make_node("Flatten", ["input"], ["f"]),
             helper.make_node("Gemm", ["f", "W"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                            ["batch", 1, 2, 2])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
                              [numpy_helper.from_array(weight.astype(np.float32), "W")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def test_agreement_rule(tmp_path):
    path = tiny_classifier(tmp_path / "tiny.onnx", np.array([[1, 0, 0, 0], [0, 1, 0, 0]]))
    x = np.random.default_rng(1).normal(size=(400, 1, 2, 2)).astype(np.float32)
    truth = (x[:, 0, 0, 1] > x[:, 0, 0, 0]).astype(int)
    logits = np.stack([x[:, 0, 0, 0], x[:, 0, 0, 1]], 1)
    flipped = logits.copy()
    flipped[:3] = -flipped[:3]  # 3 of 400 = 0.75 % different: over the 0.5 % allowed
    v = onnx_check.Variant
    variants = [v("exact", path, True, "same", True, key="exact"), v("strict", path, True, "flipped", True),
                v("loose", path, True, "flipped", False), v("vs exact", path, False, "exact", True)]
    rows, failures = onnx_check.evaluate_variants(variants, {"same": logits, "flipped": flipped}, x, truth,
                                                  ["a", "b"], time_it=False)
    assert [r["agreement"] for r in rows] == [1.0, 0.9925, 0.9925, 1.0]
    assert rows[0]["accuracy"] == 1.0
    assert len(failures) == 1 and "strict disagrees with flipped on 0.75 %" in failures[0]


@pytest.mark.parametrize("precision, strongly_typed, major, flags, absent", [
    ("fp16", False, 8, ["--fp16", "--workspace=512"], ["--int8", "--stronglyTyped", "--memPoolSize"]),
    ("int8", False, 8, ["--fp16", "--int8", "--workspace=512"], ["--stronglyTyped"]),
    ("int8", True, 10, ["--stronglyTyped", "--memPoolSize=workspace:512"], ["--int8", "--fp16", "--workspace="]),
])
def test_trtexec_command(precision, strongly_typed, major, flags, absent):
    """jetson/build_engine.py prints the trtexec line of the build it makes (NVIDIA's tool as a second opinion)."""
    import shlex

    from jetson import build_engine
    cmd = build_engine.trtexec_command("../model_save/m q.onnx", "ecg.engine", precision, strongly_typed, major,
                                       [("input", (1, 100, 100)), ("rr", (7,))], 16, 64, 512, "timing.cache")
    args = shlex.split(cmd)
    assert args[:3] == ["trtexec", "--onnx=../model_save/m q.onnx", "--saveEngine=ecg.engine"]
    assert "--minShapes=input:1x1x100x100,rr:1x7" in args and "--optShapes=input:16x1x100x100,rr:16x7" in args
    assert "--maxShapes=input:64x1x100x100,rr:64x7" in args
    assert {"--dumpProfile", "--timingCacheFile=timing.cache"} <= set(args)
    assert set(flags) <= set(args) and not [a for a in args for f in absent if a.startswith(f)]


def test_check_files_requires_tensorrt_rules_by_role(tmp_path):
    """Stage 7's check: a float / Q/DQ / FP16 file that breaks a rule stops it; the
    quantize_dynamic file is only reported."""
    path = tiny_classifier(tmp_path / "tiny.onnx", np.eye(2, 4))
    verdicts, qdq = onnx_check.check_files({"float": path}, size=2)
    assert verdicts == {"tiny.onnx": {"tensorrt_8_2": "ok", "tensorrt_10_form": "ok"}} and qdq is None
    m = onnx.load(str(path))
    m.graph.node.insert(1, helper.make_node("Hardmax", ["f"], ["f2"], name="hmax"))
    m.graph.node[2].input[0] = "f2"
    onnx.save(m, str(path))
    for role in ("float", "fp16", "qdq"):
        with pytest.raises(UserError, match=r"tiny\.onnx: TensorRT 8\.2 would not parse it: .*node 'hmax' "
                                            r"\(Hardmax\): op"):
            onnx_check.check_files({role: path}, size=2)
    verdicts, _ = onnx_check.check_files({"dynamic": path}, size=2)
    assert verdicts["tiny.onnx"]["tensorrt_8_2"].startswith("no: 1 op violation, first: node 'hmax'")
    with pytest.raises(UserError, match="not a complete int8 Q/DQ model"):  # passes TensorRT, but is not Q/DQ
        onnx_check.check_files({"qdq": tiny_classifier(tmp_path / "plain.onnx", np.eye(2, 4))}, size=2)
