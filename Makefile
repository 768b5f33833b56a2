# Two commands do everything on a fresh clone that has python3 and make:
#   make run   - set up .venv, then execute notebooks 01-07 in order (the profile follows the hardware)
#   make test  - set up .venv, then ruff, the notebook checks, unit tests and every notebook via nbval (smoke profile)
SHELL := /bin/bash
PYTHON_BOOTSTRAP ?= python3
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Empty: the notebooks choose `full` where a GPU is visible and `quick` elsewhere.
PROFILE ?=
# A local copy of Oxford-IIIT Pet, when one sits beside the checkout (offline machines, CI).
# Empty means: let tfds download the dataset.
OXFORD_PETS_DIR ?= $(wildcard $(abspath $(CURDIR)/../shared/data/oxford-iiit-pet-sample))
export OXFORD_PETS_DIR
# A folder of your own images and masks (notebooks/01_data.ipynb shows the layout); empty: Oxford-IIIT Pet.
DATASET_DIR ?= $(UNET_DATASET_DIR)
# Keep TensorFlow's C++ info and warning lines out of executed notebooks and test logs.
export TF_CPP_MIN_LOG_LEVEL ?= 2
TEST_ARTIFACTS := $(CURDIR)/outputs/test-artifacts
README_FIGURES := original.jpg mask.png clustered.png combined.png clip.gif

.PHONY: setup data run test lint export format figures clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.txt
	test -x $(PYTHON) || $(PYTHON_BOOTSTRAP) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -r requirements.txt
	$(PYTHON) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# Check the dataset is reachable (download or local copy) and prepare it once, before any notebook.
# Its one JSON line goes to the terminal; tfds' and TensorFlow's messages go to outputs/data.log.
data: $(STAMP)
	@mkdir -p outputs
	@UNET_DATASET_DIR=$(DATASET_DIR) $(PYTHON) -m unet_clustering.data 2> outputs/data.log || { cat outputs/data.log; exit 1; }

run: data
	UNET_PROFILE=$(PROFILE) UNET_DATASET_DIR=$(DATASET_DIR) $(PYTHON) tools/run_notebooks.py notebooks --output-dir outputs/notebooks

lint: $(STAMP)
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) tools/notebook_format.py --check notebooks
	$(PYTHON) tools/export.py --check

test: lint data
	rm -rf $(TEST_ARTIFACTS)
	UNET_PROFILE=smoke UNET_ARTIFACTS_DIR=$(TEST_ARTIFACTS) UNET_DATASET_DIR= MPLBACKEND=Agg \
		$(PYTHON) -m pytest tests notebooks --nbval-lax --nbval-cell-timeout=900 -p no:cacheprovider

# Copy the code that notebooks mark with `#| export MODULE` into src/unet_clustering/.
export: $(STAMP)
	$(PYTHON) tools/export.py

format: $(STAMP)
	$(PYTHON) -m ruff format .
	$(PYTHON) -m ruff check --fix .
	$(PYTHON) tools/notebook_format.py notebooks
	$(PYTHON) tools/export.py

# Refresh the README's figures from the last `make run` (notebook 06 writes them to artifacts/figures).
figures:
	cp $(addprefix artifacts/figures/,$(README_FIGURES)) images/

clean:
	rm -rf outputs artifacts
