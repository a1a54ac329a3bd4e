.PHONY: run test install bench

run:       ## install, then run the whole platform with demo data (Ctrl-C stops everything)
	scripts/run.sh

test:      ## install, then run the whole test suite against real PostgreSQL and Redis
	scripts/test.sh

install:   ## create .venv with the pinned dependencies
	scripts/install.sh

bench:     ## print the benchmark figures (see bench/README.md)
	scripts/install.sh && scripts/system-packages.sh bench && scripts/services.sh && .venv/bin/python bench/run_all.py
