"""The device side: QRS detection, the CWT scalograms, per-beat features, the beat engine,
TensorRT/ONNX Runtime runners, scoring and reports. Python 3.6+, numpy/scipy, no torch.

A package with relative imports: `ecg/` imports some of its modules (`from jetson import
morphology`), and the two entry points still run from this folder as the Jetson operator runs
them (`cd jetson && python3 infer_trt.py ...`: each makes itself
`jetson.<name>` first, PEP 366).
"""
