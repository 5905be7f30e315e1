# bai: the two commands that matter are `make up` and `make test`.
.PHONY: up down test proto lint image bench client clean help

help:  ## list targets
	@grep -E '^[a-z]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

up:  ## set up and start a single-node cluster (SQLite, local Docker); writes .bai/env
	bash deploy/scripts/up.sh

down:  ## stop everything `make up` started
	bash deploy/scripts/down.sh

test:  ## install/start what the tests need, check contracts, lint, run every test
	bash deploy/scripts/test.sh

proto:  ## regenerate pb/ from proto/
	.venv/bin/python proto/generate.py

lint:  ## buf lint, ruff, mypy
	.tools/node_modules/.bin/buf lint && .venv/bin/ruff check . && .venv/bin/mypy

image:  ## build the Python kernel image (skipped when present; FORCE=1 rebuilds)
	bash deploy/images/build.sh

bench:  ## run the benchmarks in bench/
	for b in bench/*.py; do .venv/bin/python $$b || exit 1; done

clean:  ## stop the cluster and delete its state (.bai/)
	bash deploy/scripts/down.sh; rm -rf .bai
