.PHONY: up up-detached down test build bench-kit bench-services bench-proxy bench-trace

## Build (release) and start the whole stack on http://127.0.0.1:7100; Ctrl-C stops it.
up:
	@bash scripts/stack.sh up

## The same, in the background; `make down` stops it.
up-detached:
	@bash scripts/stack.sh up --detach

down:
	@bash scripts/stack.sh down

## Build once and run the whole test suite.
test:
	@bash scripts/test.sh

build:
	swift build

## Middleware overhead benchmark (see Benchmarks/README.md).
bench-kit:
	@bash Benchmarks/kit-overhead/run.sh

## Cached vs SQLite user reads and the post list (see Benchmarks/README.md).
bench-services:
	@bash Benchmarks/services/run.sh

## The load balancer against nginx proxy_pass, and the chain against blog-service direct.
bench-proxy:
	@swift build -c release
	@bash Benchmarks/proxy/run.sh

## Trace store: batch ingest, enqueue cost, 10,000 records/s sustained.
bench-trace:
	@bash Benchmarks/trace/run.sh
