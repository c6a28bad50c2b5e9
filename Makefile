# make pipeline  - the whole pipeline, thesis config (outputs under WORKDIR, default: here)
# make demo      - the same on the quick profile (a few records, short training) in runs/quick
# make test      - the test suite;  make bench - the speed benchmarks
# Each target creates .venv and installs requirements.txt first (skipped when up to date).

SHELL := /bin/bash
PYTHON ?= python3
PY := .venv/bin/python
WORKDIR ?= .
ARGS ?=
# In this repository's own environment the read-only MIT-BIH copy beside it is used.
ifneq ($(wildcard ../shared/mitdb/RECORDS),)
export MITDB_DIR ?= $(abspath ../shared/mitdb)
endif

.PHONY: venv pipeline demo test bench clean-demo

.venv/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv .venv
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	touch $@

venv: .venv/.installed

CONFIG ?=
DEVICE_RECORD ?= 119
RUN = --workdir $(WORKDIR) $(CONFIG)

# Each stage skips or resumes work already done, so an interrupted pipeline is simply re-run.
pipeline: venv
	$(PY) 1_preprocessing.py $(RUN) $(ARGS)
	$(PY) 2_train_test_valid_split.py $(RUN)
	$(PY) 3_training.py $(RUN) --resume
	$(PY) 4_testing.py $(RUN)
	$(PY) 5_magnitude_channel_pruning.py $(RUN) --resume
	$(PY) 6_AIMET_quantization.py $(RUN) --resume
	$(PY) 7_AIMET_onnx.py $(RUN)
	set -o pipefail; cd jetson && ../$(PY) infer_trt.py --backend onnxruntime --onnx $(abspath $(WORKDIR))/model_save/ecg_model_float.onnx \
	  --images $(abspath $(WORKDIR))/data/test_images --repeats 50 | tee $(abspath $(WORKDIR))/reports/jetson_ort_images.txt
	set -o pipefail; cd jetson && ../$(PY) infer_trt.py --backend onnxruntime --onnx $(abspath $(WORKDIR))/model_save/ecg_model_quantized.onnx \
	  --record $${MITDB_DIR:-$(abspath $(WORKDIR))/data/mitdb}/$(DEVICE_RECORD) --operator $(abspath $(WORKDIR))/model_save/cwt_operator.npz \
	  --out $(abspath $(WORKDIR))/reports/jetson_beats_$(DEVICE_RECORD).csv | tee $(abspath $(WORKDIR))/reports/jetson_ort_record.txt

demo:
	$(MAKE) pipeline WORKDIR=runs/quick CONFIG="--config configs/quick.toml"

test: venv
	$(PY) -m pytest -q tests

bench: venv
	$(PY) bench/bench_preprocessing.py
	$(PY) bench/bench_training.py --data $(WORKDIR)/data/train_images

clean-demo:
	rm -rf runs/quick
