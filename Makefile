# The one entry point: CI only calls `make test`.
GO         ?= go
# An execution count, not a duration: Go 1.26's fuzz coordinator can fail a
# duration-bounded run with a spurious "context deadline exceeded" and no
# crasher when the time runs out mid-execution (go.dev/issue/75804, fixed in
# Go 1.27). A count has no deadline to race.
FUZZTIME   ?= 60000x
BENCHOUT   ?= bench-results
# make bench: 3 runs of everything, the fleet scenarios' replicas as separate
# processes, 2 s timed runs: about 5-6 minutes on a 2-core machine.
# BENCHFLAGS=--quick replaces all of it with a one-minute, one-run smoke.
BENCHFLAGS ?= --runs 3 --processes --duration 2s
PROFILEFLAGS ?= --duration 5s
# The library, and the nested modules that keep the benchmark peers and the
# CLI's dependencies out of the library's go.mod.
MODULES    := . bench cmd/tiercache tiered/tieredotel

.DEFAULT_GOAL := help
.PHONY: help redis test bench profile gobench benchstat fuzz cli

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

test: redis ## vet, the whole suite with -race (bench --quick smoke included), allocation checks, a brief fuzz of every wire decoder
	@for m in $(MODULES); do echo "go vet ($$m)"; (cd $$m && $(GO) vet ./...) || exit 1; done
	@for m in $(MODULES); do (cd $$m && $(GO) test -race -count=1 -timeout 10m ./...) || exit 1; done
	@# Allocation counts, heap sizes and a full ristretto buffer are only
	@# meaningful without -race (see alloc_test.go, heap_test.go,
	@# local/handover_test.go, local/close_test.go).
	$(GO) test -count=1 -run 'AllocatesNothing|HeapIsWithin|LosesNothing|SurviveClose' ./...
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeEnvelope$$' -fuzztime $(FUZZTIME) ./remote
	$(GO) test -run '^$$' -fuzz '^FuzzJSONStringShortcut$$' -fuzztime $(FUZZTIME) ./remote
	$(GO) test -run '^$$' -fuzz '^FuzzJSONMarshalStringShortcut$$' -fuzztime $(FUZZTIME) ./remote
	$(GO) test -run '^$$' -fuzz '^FuzzHolderExpects$$' -fuzztime $(FUZZTIME) ./remote
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeMessage$$' -fuzztime $(FUZZTIME) ./coherence

cli: ## build the tiercache CLI into bin/tiercache
	cd cmd/tiercache && $(GO) build -o ../../bin/tiercache .

bench: redis cli ## the main job: every scenario for tiercache and its peers, 3 runs, replicas as processes; prints where the report is (BENCHFLAGS=--quick for a short run)
	./bin/tiercache bench --out $(BENCHOUT)/$$(date -u +%Y%m%dT%H%M%SZ) $(BENCHFLAGS)

profile: redis cli ## CPU and allocation profiles of the zipf scenarios, tiercache alone, replicas in one process; prints pprof -top of each
	@dir=$(BENCHOUT)/profile-$$(date -u +%Y%m%dT%H%M%SZ); mkdir -p $$dir; \
	./bin/tiercache bench --scenarios zipf --candidates tiercache --out $$dir $(PROFILEFLAGS) \
		--cpuprofile $$dir/cpu.pprof --memprofile $$dir/mem.pprof >/dev/null && \
	echo "== CPU ($$dir/cpu.pprof) ==" && $(GO) tool pprof -top -nodecount=35 bin/tiercache $$dir/cpu.pprof && \
	echo "== allocations ($$dir/mem.pprof) ==" && $(GO) tool pprof -top -nodecount=25 -sample_index=alloc_space bin/tiercache $$dir/mem.pprof

gobench: redis ## the packages' Go micro-benchmarks; writes bench-results/go-bench-<time>.txt for benchstat
	@mkdir -p $(BENCHOUT)
	@out=$(BENCHOUT)/go-bench-$$(date -u +%Y%m%dT%H%M%SZ).txt; \
	$(GO) test -run '^$$' -bench . -benchmem -count 6 ./... | tee $$out; \
	echo; echo "benchmark results written to $$out"

benchstat: ## compare two gobench files: make benchstat OLD=a.txt NEW=b.txt
	@test -n "$(OLD)" -a -n "$(NEW)" || { echo "usage: make benchstat OLD=old.txt NEW=new.txt"; exit 2; }
	$(GO) run golang.org/x/perf/cmd/benchstat@latest $(OLD) $(NEW)

fuzz: ## fuzz the wire decoders for longer: make fuzz FUZZTIME=5000000x
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeEnvelope$$' -fuzztime $(FUZZTIME) ./remote
	$(GO) test -run '^$$' -fuzz '^FuzzJSONStringShortcut$$' -fuzztime $(FUZZTIME) ./remote
	$(GO) test -run '^$$' -fuzz '^FuzzJSONMarshalStringShortcut$$' -fuzztime $(FUZZTIME) ./remote
	$(GO) test -run '^$$' -fuzz '^FuzzHolderExpects$$' -fuzztime $(FUZZTIME) ./remote
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeMessage$$' -fuzztime $(FUZZTIME) ./coherence
