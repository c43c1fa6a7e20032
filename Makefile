# The one entry point: CI only calls `make test`.
GO       ?= go
FUZZTIME ?= 5s
BENCHOUT ?= bench-results

.DEFAULT_GOAL := help
.PHONY: help redis test bench benchstat fuzz

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

redis: ## install redis-server when it is missing (Debian, as root)
	@if command -v redis-server >/dev/null 2>&1; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "redis-server missing: installing it with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	else \
		echo "redis-server is missing and cannot be installed here: run 'sudo apt-get install -y redis-server' (Debian/Ubuntu) or put redis-server on PATH"; \
		exit 1; \
	fi

test: redis ## vet, the whole suite with -race, allocation checks, and a brief fuzz of every wire decoder
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 10m ./...
	@# Allocation counts are only meaningful without -race (see alloc_test.go).
	$(GO) test -count=1 -run 'AllocatesNothing' ./...
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeEnvelope$$' -fuzztime $(FUZZTIME) ./remote
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeMessage$$' -fuzztime $(FUZZTIME) ./coherence

bench: redis ## the Go benchmarks, each against throwaway redis-servers; writes bench-results/go-bench-<time>.txt
	@mkdir -p $(BENCHOUT)
	@out=$(BENCHOUT)/go-bench-$$(date -u +%Y%m%dT%H%M%SZ).txt; \
	$(GO) test -run '^$$' -bench . -benchmem -count 3 ./... | tee $$out; \
	echo; echo "benchmark results written to $$out"

benchstat: ## compare two benchmark files: make benchstat OLD=a.txt NEW=b.txt
	@test -n "$(OLD)" -a -n "$(NEW)" || { echo "usage: make benchstat OLD=old.txt NEW=new.txt"; exit 2; }
	$(GO) run golang.org/x/perf/cmd/benchstat@latest $(OLD) $(NEW)

fuzz: ## fuzz the wire decoders for longer: make fuzz FUZZTIME=5m
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeEnvelope$$' -fuzztime $(FUZZTIME) ./remote
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeMessage$$' -fuzztime $(FUZZTIME) ./coherence
