# Two entry points on a fresh machine (Python 3.11 with venv):
#   make demo   builds the synthetic world and runs the collective-training experiment
#               (depth + normals, sim -> real, with and without consistency) and prints a table
#   make test   runs the test suite
# Both create .venv and install the pinned stack (requirements.lock) on first use.

PY := .venv/bin/python
DATA_DIR ?= data/tensorflow_datasets
DEMO_DIR ?= runs/demo_table3_synthetic
SEEDS ?= 1

.PHONY: setup demo test benchmark-table3 clean-demo

setup: .venv/.installed

.venv/.installed: requirements.lock
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	touch $@

demo: setup
	$(PY) tools/build_dataset.py --dataset=synthetic_world --domain=both --height=48 --width=64 \
	  --num_train=1000 --num_validation=50 --num_test=100 --data_dir=$(DATA_DIR)
	$(PY) tools/compare.py --out_dir=$(DEMO_DIR) --seeds=$(SEEDS) \
	  --title="Table 3 analogue: synthetic sim -> real, depth + normals" \
	  --config=baseline=gin/experiments/synthetic/depth_normals_baseline.gin \
	  --config=consistency_warmup=gin/experiments/synthetic/depth_normals_sim2real_warmup.gin \
	  --gin_bindings="synthetic_world_clips.data_dir='$(DATA_DIR)'" \
	  --metric=depth/abs_rel --metric=depth/delta1 --metric=normals/mean_angle \
	  --metric=normals/within_11_25 --metric=normals/within_22_5 --metric=normals/within_30

test: setup
	$(PY) -m pytest tests -q -p no:cacheprovider

clean-demo:
	rm -rf $(DEMO_DIR)
