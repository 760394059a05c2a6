# doorguard: `make` alone prints this help.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
SHARED ?= ../shared
# Extras installed into .venv: the test target uses the workstation toolchain.
EXTRAS ?= workstation,test
SOURCE ?= demo
FRAMES ?= 120
HOST ?=
comma := ,

.DEFAULT_GOAL := help
.PHONY: help sysdeps venv run test test-torch test-arm test-fast models bench bench-arm install uninstall deploy clean

help: ## Show this help
	@echo "doorguard make targets:"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  %-12s %s\n", $$1, $$2}'

sysdeps: ## Install the Debian packages the build and tests need (apt, when root or sudo)
	@./scripts/sysdeps.sh

$(VENV)/.stamp-$(subst $(comma),-,$(EXTRAS)): pyproject.toml
	@./scripts/sysdeps.sh venv
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.$(if $(EXTRAS),[$(EXTRAS)])'
	@touch $@

venv: $(VENV)/.stamp-$(subst $(comma),-,$(EXTRAS)) ## Create .venv with the chosen extras (EXTRAS=workstation,test)

run: ## Run the doorway pipeline on the built-in demo (mock GPIO when no Pi)
	@$(MAKE) --no-print-directory venv EXTRAS=
	@# Not on a Pi: gpiozero's mock pins (their changes are logged), unless the caller chose a factory.
	@if ! grep -qs "Raspberry Pi" /proc/device-tree/model; then \
		export GPIOZERO_PIN_FACTORY=$${GPIOZERO_PIN_FACTORY:-mock}; fi; \
	echo "$(VENV)/bin/doorguard run --source $(SOURCE) --max-frames $(FRAMES)  (GPIOZERO_PIN_FACTORY=$${GPIOZERO_PIN_FACTORY:-default})"; \
	$(VENV)/bin/doorguard run --source $(SOURCE) --max-frames $(FRAMES)

test: ## Set up .venv (workstation extras) and run the whole test suite
	@./scripts/sysdeps.sh test
	@$(MAKE) --no-print-directory venv EXTRAS=workstation,test
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

test-torch: ## The PyTorch import's tests, in their own process (installs doorguard[torch]: README "PyTorch and ONNX classifiers")
	@$(MAKE) --no-print-directory venv EXTRAS=workstation,test,torch
	$(VENV)/bin/python -m pytest tests/test_convert_torch.py $(PYTEST_ARGS)

test-arm: ## Edge tests, installed runner, int8 outputs vs x86 on an emulated Pi 4 and Pi 5: Bookworm and Trixie (ARM_SUITES=bookworm for one; root)
	@$(MAKE) --no-print-directory venv EXTRAS=workstation,test
	./scripts/test-arm.sh

models: ## Rebuild the default models in models/ from ../shared
	@$(MAKE) --no-print-directory venv EXTRAS=workstation,test
	$(VENV)/bin/doorguard models --shared $(SHARED) --out models

bench: ## Benchmarks (needs ../shared): writes bench-out/bench.md and plots
	@$(MAKE) --no-print-directory venv EXTRAS=workstation,test
	$(VENV)/bin/doorguard bench --out bench-out

bench-arm: ## Guest instructions per frame on an emulated Pi 4 / Pi 5, writes bench-out/arm/ (root)
	@$(MAKE) --no-print-directory venv EXTRAS=workstation,test
	$(VENV)/bin/doorguard bench-arm --out bench-out/arm

install: ## On a Pi: install doorguard as a systemd service (idempotent)
	sudo ./systemd/install.sh

uninstall: ## On a Pi: remove the service (keeps recorded events unless PURGE=1)
	sudo PURGE=$(PURGE) ./systemd/uninstall.sh

deploy: ## From a workstation: make deploy HOST=pi@doorway.local
	@test -n "$(HOST)" || { echo "usage: make deploy HOST=user@host" >&2; exit 2; }
	./systemd/deploy.sh "$(HOST)"

clean: ## Remove the venv and build outputs
	rm -rf $(VENV) build dist *.egg-info .pytest_cache bench-out
