# fgimg: host packages, build, test, bench and lint. Plain Go: no build
# tags, no cgo.
# Go on PATH, else where the official tarball puts it (sudo resets PATH).
ifeq ($(origin GO),undefined)
GO      := $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
endif
BENCH   ?= .
BENCHTIME ?= 1x
FUZZTIME ?= 30s
SUDO    := $(if $(filter 0,$(shell id -u)),,sudo)

# The host packages fgimg and its tests use, by Debian and Ubuntu name: the
# one list (internal/hosttool's table names the package of each tool, and
# its tests check that every one is here).
# busybox-static: the test kit's tiny root filesystems.
# debootstrap, mmdebstrap: bootstrap stages and the end-to-end builds of
#   the Debian examples from the mirror.
# passwd: useradd and friends, copied into test root filesystems.
# passt, uidmap: pasta and newuidmap for the sandbox's unprivileged builds.
# skopeo: checks that OCI targets are readable by the field's tools.
# docker-registry: a local registry for pulling docker:// images.
# e2fsprogs, dosfstools, mtools, syslinux, syslinux-common, systemd-boot-efi,
#   eatmydata, util-linux: disk targets (mkfs.ext4 -d, FAT checks, boot loaders).
# qemu-system-x86, qemu-utils, ovmf: booting what was built (BIOS, UEFI,
#   netboot) and checking qcow2 files; cpio, zstd, pigz: initramfs checks.
# python3-keystone, glance-api, glance-common, uwsgi-core,
#   uwsgi-plugin-python3, python3-minimal: a real Keystone and Glance for
#   the registration tests (internal/openstacktest starts its own; the
#   packages' services are not started: see deps);
#   python3-openstackclient: the client the register benchmark compares with.
# genisoimage: the config drive and context CD-ROM the cloud targets boot with.
# awscli: `aws s3 cp`, what the S3 upload benchmark compares s3client with.
APT_PACKAGES = \
  busybox-static debootstrap mmdebstrap passwd passt uidmap skopeo \
  docker-registry e2fsprogs dosfstools mtools syslinux syslinux-common \
  systemd-boot-efi eatmydata util-linux qemu-system-x86 qemu-utils ovmf \
  cpio zstd pigz ca-certificates coreutils make git gzip tar rpm systemd \
  python3-keystone glance-api glance-common uwsgi-core uwsgi-plugin-python3 \
  python3-minimal python3-openstackclient genisoimage awscli openssl

# Test servers Debian does not package, built with go install into Go's
# bin directory when not on PATH (keep in step with the tests' helpers).
# versitygw: a real S3 server (internal/s3test).
GO_TOOLS = github.com/versity/versitygw/cmd/versitygw@v1.8.0

# The example that `make demo` builds and boots.
DEMO_TARGET ?= base-cloud
DEMO_PATH   ?= examples/debian

CHECK_GO = @$(GO) version >/dev/null 2>&1 || { echo "Go 1.26 or later is needed and $(GO) is not there:"; \
	echo "download it from https://go.dev/dl/ and unpack it: tar -C /usr/local -xzf go1.26.*.linux-amd64.tar.gz"; exit 1; }

.PHONY: deps go build demo test bench lint fuzz clean

# deps installs APT_PACKAGES that are missing (nothing to do, and no root
# needed, when all are installed). Go is not among them: Debian's is too
# old; `make go` says where to get it. A policy-rc.d denies the packages'
# services their start during the install (the tests start their own
# servers): nothing is left running, or failing for want of a setup.
deps:
	@missing=; for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${db:Status-Status}' $$p 2>/dev/null | grep -qx installed || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then echo "deps: all $(words $(APT_PACKAGES)) host packages are installed"; \
	elif ! command -v apt-get >/dev/null; then \
		echo "deps: no apt-get here; install the equivalents of these Debian packages:" $$missing; exit 1; \
	else \
		echo "deps: installing" $$missing; \
		policy=; if [ ! -e /usr/sbin/policy-rc.d ]; then policy=/usr/sbin/policy-rc.d; \
			printf '#!/bin/sh\nexit 101\n' | $(SUDO) tee $$policy >/dev/null && $(SUDO) chmod 755 $$policy; fi; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
		status=$$?; if [ -n "$$policy" ]; then $(SUDO) rm -f $$policy; fi; exit $$status; \
	fi
	$(CHECK_GO)
	@for t in $(GO_TOOLS); do n=$${t%@*}; n=$${n##*/}; \
		command -v $$n >/dev/null || [ -x "$$($(GO) env GOPATH)/bin/$$n" ] || \
		{ echo "deps: go install $$t"; $(GO) install $$t || exit 1; }; \
	done

go:
	$(CHECK_GO)

build: go
	$(GO) build -o bin/fgimg ./cmd/fgimg

# demo builds the example's base image into a qcow2 disk and boots it.
demo: deps build
	$(SUDO) ./bin/fgimg boot -build $(DEMO_TARGET) $(DEMO_PATH)

# TESTFLAGS: extra go test flags, such as -v or -run.
test: deps
	$(GO) test -timeout 45m $(TESTFLAGS) ./...

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
