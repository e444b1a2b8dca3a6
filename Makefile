# robot_training: the two README commands are `make train` and `make test`.
# Both set up the environment first (scripts/setup.sh, quick when nothing changed).
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c

PYTEST_ARGS ?=
TRAIN_ARGS ?=

LOOP_ARGS ?= --algorithm sac --until-balanced --max-minutes 30

.PHONY: all setup build test train train-all clean distclean help

all: setup

help:
	@echo "make train      set up, then the learning loop on the embedded robot until it balances (online_loop)"
	@echo "make train-all  set up, then the seed's offline pipeline (python -m robot_training.train --mode all)"
	@echo "make test       set up, then run the test suite (pytest test/); PYTEST_ARGS='-k foo' narrows it"
	@echo "make setup      create .venv, install dependencies, colcon build both packages"
	@echo "make build      force a colcon build and dependency check (scripts/setup.sh --force)"
	@echo "make clean      remove build/ install/ log/ and the stamps"
	@echo "make distclean  clean, and remove .venv"

setup:
	@bash scripts/setup.sh

build:
	@bash scripts/setup.sh --force

test: setup
	@source scripts/env.sh && python -m pytest $(PYTEST_ARGS)

train: setup
	@source scripts/env.sh && python -m robot_training.online.graph $(LOOP_ARGS) $(TRAIN_ARGS)

train-all: setup
	@source scripts/env.sh && python -m robot_training.train --mode all $(TRAIN_ARGS)

clean:
	rm -rf build install log .stamps

distclean: clean
	rm -rf .venv
