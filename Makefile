# Two entry points on a fresh machine (Python 3.11 with venv):
#   make demo   builds the synthetic world and runs the collective-training experiment
#               (depth + normals, sim -> real, with and without consistency) and prints a table
#   make test   runs the test suite (what CI runs, after make lint)
# Both create .venv and install the pinned stack (requirements.lock) on first use.

PY := .venv/bin/python
DATA_DIR ?= data/tensorflow_datasets
DEMO_DIR ?= runs/demo_table3_synthetic
SEEDS ?= 1

.PHONY: setup demo test lint format clean-demo

setup: .venv/.installed

# The pinned stack, then this package (editable, console scripts taskology-*) on top of it.
.venv/.installed: requirements.lock pyproject.toml setup.py
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	# The Waymo reader's protos and frame_utils: its declared dependencies pin TF 2.13, so no deps
	# (what it uses at run time is in the lock; requirements.txt says why).
	$(PY) -m pip install -q --no-deps waymo-open-dataset-tf-2-12-0==1.6.7
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

# oneDNN (and TF's oneDNN-backed matrix products) picks kernels by the CPU's instruction set, which
# changes the last bits of results between CPU models; pinning AVX2 gives every AVX2-or-newer CPU
# the kernels this README's numbers were made with (README, "Reproducibility").
demo: export ONEDNN_MAX_CPU_ISA ?= AVX2
demo: export TF_ENABLE_ONEDNN_OPTS ?= 0
demo: setup
	$(PY) -m taskology_tf_tools.build_dataset --dataset=synthetic_world --domain=both --height=48 --width=64 \
	  --num_train=1000 --num_validation=50 --num_test=100 --data_dir=$(DATA_DIR)
	$(PY) -m taskology_tf_tools.compare --out_dir=$(DEMO_DIR) --seeds=$(SEEDS) \
	  --title="Table 3 analogue: synthetic sim -> real, depth + normals" \
	  --config=baseline=gin/experiments/synthetic/depth_normals_baseline.gin \
	  --config=consistency_warmup=gin/experiments/synthetic/depth_normals_sim2real_warmup.gin \
	  --gin_bindings="synthetic_world_clips.data_dir='$(DATA_DIR)'" \
	  --metric=depth/abs_rel --metric=depth/delta1 --metric=normals/mean_angle \
	  --metric=normals/within_11_25 --metric=normals/within_22_5 --metric=normals/within_30

# Tests run in 2 worker processes (pytest-xdist); each builds its own session fixtures (the tiny
# synthetic world takes seconds) and holds a TensorFlow of ~1-2 GB. TEST_WORKERS=auto uses one per
# core; TEST_WORKERS=0 runs everything in this process.
TEST_WORKERS ?= 2
test: setup
	$(PY) -m pytest tests -q -p no:cacheprovider -n $(TEST_WORKERS) --durations=25

# Style (configured in pyproject.toml): pyink formats, ruff lints. `make format` fixes both.
lint: setup
	.venv/bin/pyink --check --diff --quiet .
	.venv/bin/ruff check .

format: setup
	.venv/bin/ruff check --fix --select I .
	.venv/bin/pyink --quiet .

clean-demo:
	rm -rf $(DEMO_DIR)
