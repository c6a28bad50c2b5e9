# make pipeline  - the whole pipeline, thesis config (outputs under WORKDIR, default: here)
# make demo      - the same on the quick profile (a few records, short training) in runs/quick
# make aami      - the new-patient profile (AAMI classes, DS1 -> DS2, RR features) in runs/aami
# make test      - the test suite;  make test-fast - its unit tier (no MIT-BIH data, no training)
# make bench     - the speed benchmarks
# make release   - copy a finished run's deployable files into models/<name>/ (then git add them);
#                  make release-aami for the AAMI profile's run in runs/aami
# Each target creates .venv and installs requirements.txt first (skipped when up to date).

SHELL := /bin/bash
PYTHON ?= python3
PY := .venv/bin/python
WORKDIR ?= .
ARGS ?=
# MIT-BIH: MITDB_DIR from the environment (CI sets it); else a copy beside the checkout if there is
# one; else stage 1 uses (and downloads into) data/mitdb.
ifneq ($(wildcard ../shared/mitdb/RECORDS),)
MITDB_DIR ?= $(abspath ../shared/mitdb)
endif
ifdef MITDB_DIR
export MITDB_DIR
endif

.PHONY: venv pipeline demo aami aami-demo release release-aami test test-fast bench clean-demo

.venv/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv .venv
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	touch $@

venv: .venv/.installed

CONFIG ?=
DEVICE_RECORD ?= 119
RUN = --workdir $(WORKDIR) $(CONFIG)
# Where a file passed between stages lives, asked from the config (its one home), e.g.
# $(call where,artifact,float_onnx) or $(call where,path,test_dir); absolute paths.
where = $(shell $(PY) -m ecg.config $(RUN) $(1) $(2))

# Each stage skips or resumes work already done, so an interrupted pipeline is simply re-run.
pipeline: venv
	$(PY) 1_preprocessing.py $(RUN) $(ARGS)
	$(PY) 2_train_test_valid_split.py $(RUN)
	$(PY) 3_training.py $(RUN) --resume
	$(PY) 4_testing.py $(RUN)
	$(PY) 5_magnitude_channel_pruning.py $(RUN) --resume
	$(PY) 6_AIMET_quantization.py $(RUN) --resume
	$(PY) 7_AIMET_onnx.py $(RUN)
	# test images: image-only models (an RR model needs each beat's RR features: records only)
	if [ "$(call where,setting,model.rr_features)" != "true" ]; then set -o pipefail; cd jetson && \
	  ../$(PY) infer_trt.py --backend onnxruntime --onnx $(call where,artifact,float_onnx) \
	  --images $(call where,path,test_dir) --repeats 50 | tee $(call where,path,reports_dir)/jetson_ort_images.txt; fi
	set -o pipefail; cd jetson && ../$(PY) infer_trt.py --backend onnxruntime --onnx $(call where,artifact,quantized_onnx) \
	  --record $${MITDB_DIR:-$(call where,path,data_dir)}/$(DEVICE_RECORD) --beats detect --score --operator $(call where,artifact,cwt_operator) \
	  --out $(call where,path,reports_dir)/jetson_beats_$(DEVICE_RECORD).csv --report $(call where,path,reports_dir)/jetson_report_$(DEVICE_RECORD) \
	  | tee $(call where,path,reports_dir)/jetson_ort_record.txt

	$(PY) -m ecg.summary $(RUN)

demo:
	$(MAKE) pipeline WORKDIR=runs/quick CONFIG="--config configs/quick.toml"

# The new-patient profile: AAMI classes, DS1 -> DS2, RR features (hours on a CPU; resumable)
aami:
	$(MAKE) pipeline WORKDIR=runs/aami CONFIG="--config configs/aami.toml" DEVICE_RECORD=208

# The same on the quick settings (a few records, one short epoch), in demo-like time
aami-demo:
	$(MAKE) pipeline WORKDIR=runs/aami-quick DEVICE_RECORD=208 \
	  CONFIG="--config configs/aami.toml --config configs/quick.toml --set train.max_per_class=800"

# The shipped models (models/README.md): the run's ONNX files, CWT operator and compact .pth, its
# figures, reference predictions and SHA256SUMS, swapped into models/<[release] name> whole
release: venv
	$(PY) -m ecg.release $(RUN)

release-aami:
	$(MAKE) release WORKDIR=runs/aami CONFIG="--config configs/aami.toml"

test: venv
	$(PY) -m pytest -q tests

test-fast: venv
	$(PY) -m pytest -q -m "not data and not slow" tests

bench: venv
	$(PY) bench/bench_preprocessing.py
	$(PY) bench/bench_detection.py
	$(PY) bench/bench_training.py --data $(call where,path,train_dir)

clean-demo:
	rm -rf runs/quick
