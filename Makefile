# guestdiag: the two commands are `make demo` (run it) and `make test` (test it).
# Both install what they need (scripts/deps.sh) when run as root on Debian.

GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/guestdiag/guestdiag/internal/version.Version=$(VERSION)
BIN     := bin
CMDS    := guestdiag guestdiag-agent guestdiag-relay guestdiag-collector guestdiag-scheduler

.PHONY: all build deps demo test lint test-unit test-vmlab bench fuzz clean packages

all: build

deps:
	@scripts/deps.sh

build:
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ $(addprefix ./cmd/,$(CMDS))

# deb and rpm packages of the agent, the relay and the control plane for
# amd64 and arm64, and the Windows agent's MSI, into dist/ (docs/install.md).
# The version comes from git describe (internal/pkgbuild.Version).
DIST    := dist
packages: deps
	@for p in linux/amd64 linux/arm64; do \
		echo "build $$p"; \
		CGO_ENABLED=0 GOOS=$${p%/*} GOARCH=$${p#*/} $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/$${p%/*}_$${p#*/}/ $(addprefix ./cmd/,$(CMDS)) || exit 1; \
	done
	CGO_ENABLED=0 GOOS=windows GOARCH=amd64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/windows_amd64/ ./cmd/guestdiag-agent
	$(GO) run ./cmd/guestdiag-pkg -describe '$(VERSION)' -bin $(BIN) -out $(DIST)

# Boots two lab guests running the agent, runs the control plane (embedded
# NATS, relay, collector) against their channels and prints where to look.
demo: deps build
	$(GO) run ./test/vmlab/cmd/vmlab-demo -bin $(BIN)

# Everything CI runs: formatting, vet for every shipped platform, unit and
# integration tests, and the QEMU VM lab.
test: deps lint test-unit test-vmlab

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	GOOS=linux   GOARCH=amd64 $(GO) vet ./...
	GOOS=linux   GOARCH=arm64 $(GO) vet ./...
	GOOS=windows GOARCH=amd64 $(GO) vet ./...

# The real Alertmanager, Chromium, packaging tools (dpkg-deb, rpm, wixl,
# msiinfo) and the nats CLI that scripts/deps.sh installs must be there: their tests fail
# instead of skipping.
test-unit:
	GUESTDIAG_REQUIRE_ALERTMANAGER=1 GUESTDIAG_REQUIRE_CHROMIUM=1 GUESTDIAG_REQUIRE_PACKAGING=1 GUESTDIAG_REQUIRE_NATSCLI=1 $(GO) test -race -count=1 ./...

# The QEMU guests, the Windows agent under Wine (test/wine), and node loss
# on a three-node NATS cluster under load with the cluster configuration
# and growth tests (test/cluster), and two collectors serving one fleet on
# it (test/loadgen), without the race detector, under which they skip.
test-vmlab:
	GUESTDIAG_VMLAB=require $(GO) test -count=1 -timeout 30m -v -run 'TestIntegration' ./test/vmlab/
	GUESTDIAG_VMLAB=require $(GO) test -count=1 -timeout 20m -v -run 'TestIntegrationWine' ./test/wine/
	GUESTDIAG_CLUSTER=1 GUESTDIAG_REQUIRE_NATSCLI=1 $(GO) test -count=1 -timeout 20m -v ./test/cluster/
	$(GO) test -count=1 -timeout 10m -v -run 'TestIntegration' ./test/loadgen/

bench:
	$(GO) test ./protocol -run XXX -bench Decode -benchmem -count 3 -cpu 1
	$(GO) test ./hostrelay -run XXX -bench RelayThroughput -benchtime 200000x -count 3 -cpu 1
	$(GO) test ./hostrelay -run XXX -bench RelayLatency1000 -benchtime 10000x -count 3 -cpu 1
	$(GO) test ./checks/logs -run XXX -bench LogsFilePipeline -benchmem -count 3 -cpu 1
	$(GO) test ./checks/resources -run XXX -bench ResourcesRun -benchmem -count 3 -cpu 1
	test/bench/cycle.sh -test.count 3 -test.cpu 1 -test.benchtime 10x
	$(GO) test ./kb -run XXX -bench 'Match$$' -benchmem -count 3 -cpu 1 -benchtime 2s
	test/bench/kbgrep.sh
	$(GO) test ./collector/dashboard -run XXX -bench FleetPage10k -benchmem -count 3
	test/bench/collector.sh -benchtime 1x -count 3
	$(GO) test ./test/loadgen -run XXX -bench KVUpdate -benchtime 2000x -count 2
	test/bench/fleet.sh 2 3 300 2 40s 2
	test/bench/fleet.sh 1 3 500 4 30s 2

fuzz:
	$(GO) test ./protocol -run XXX -fuzz '^FuzzDecode$$' -fuzztime 30s
	$(GO) test ./protocol -run XXX -fuzz '^FuzzFastDecoderMatchesReference$$' -fuzztime 30s
	$(GO) test ./protocol -run XXX -fuzz '^FuzzAckDecoderMatchesReference$$' -fuzztime 15s

clean:
	rm -rf $(BIN) $(DIST)
