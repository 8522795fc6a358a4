# fgimg: build, test, bench and lint. Plain Go: no build tags, no cgo.
GO      ?= go
BENCH   ?= .
BENCHTIME ?= 1x
FUZZTIME ?= 30s

.PHONY: build test bench lint fuzz clean

build:
	$(GO) build -o bin/fgimg ./cmd/fgimg

test:
	$(GO) test -timeout 30m ./...

# Benchmarks, each beside the tool a user would otherwise run, one run
# each (BENCHTIME=3x for more). Disk, netboot and qcow2 benchmarks build
# trees of over 1 GB and take minutes. Planning scales linearly (1000 images
# in a 10-deep pedigree under 1 s).
bench:
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchtime $(BENCHTIME) -timeout 60m ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run ./cmd/fgimg fmt -check -recursive examples

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzLoad -fuzztime $(FUZZTIME) ./lang

clean:
	rm -rf bin
