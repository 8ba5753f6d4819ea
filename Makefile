# belt: build, test against local clusters (two PostgreSQL 15 + pglogical, one PostgreSQL 18), demo, package.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

# e.g. make test SWIFT_TEST='swift test --filter ReplicationTests'
# Tests run one at a time: roles are cluster-wide, so one test's revoke-logins or Ctrl-C
# would disturb another's.
SWIFT_TEST ?= swift test --no-parallel
# Without a SWIFT_TEST of your own, the suites run on TEST_SHARDS sets of clusters at once
# (scripts/test-shards: one queue of suites, each set running one test at a time).
TEST_SHARDS ?= 3
# The tests that stop and start a cluster (IsolatedFaultTests) run alone on their set: last of
# worker 1 with shards, after the others without.
# ISOLATED=0 leaves them out (e.g. with a SWIFT_TEST that filters).
ISOLATED ?= 1
# A hung test fails the run after this many seconds per phase (timeout kills the whole group).
TEST_TIMEOUT ?= 1800
# Then make dist and dist-test: the package's binary, with the Swift toolchain hidden, runs a
# whole migrate.lua + cutover.lua. DIST=0 leaves them out.
DIST ?= 1

.PHONY: format all deps build test dist dist-test demo clusters-up clusters-down clean-clusters

all: build

deps:
	scripts/install-deps

build:
	swift build

# Formats the tree as .swift-format says; make test checks it (scripts/format-check).
format:
	swift format -i -r Sources Tests Plugins

# The clusters are stopped whatever happens to the tests (EXIT trap), and the
# recipe exits with swift test's status. The env must be in swift test's
# environment, hence one shell line.
test: deps
	scripts/format-check; \
	trap 'scripts/pg-clusters down' EXIT; \
	scripts/pg-clusters up; \
	eval "$$(scripts/pg-clusters env)"; export BELT_TEST_REQUIRE_SERVERS=1; \
	swift build --build-tests; \
	if [[ "$(origin SWIFT_TEST)" == file && "$(TEST_SHARDS)" -gt 1 ]]; then \
	  TEST_TIMEOUT=$(TEST_TIMEOUT) ISOLATED=$(ISOLATED) scripts/test-shards $(TEST_SHARDS); \
	else \
	  timeout -k 10 $(TEST_TIMEOUT) $(SWIFT_TEST) --skip-build --skip IsolatedFaultTests; \
	  if [[ "$(ISOLATED)" == 1 ]]; then \
	    BELT_ISOLATED=1 timeout -k 10 $(TEST_TIMEOUT) $(SWIFT_TEST) --skip-build --filter IsolatedFaultTests; \
	  fi; \
	fi; \
	if [[ "$(DIST)" == 1 ]]; then \
	  scripts/dist; \
	  timeout -k 10 $(TEST_TIMEOUT) scripts/dist-test; \
	fi

# The release package: .build-dist/belt_<version>_amd64.deb and a tarball (see scripts/dist).
dist:
	scripts/dist

# The package's binary without the Swift toolchain: --help, --version, migrate + cutover
# on a test pair (see scripts/dist-test). Starts and stops the clusters if they are down.
dist-test: deps dist
	timeout -k 10 $(TEST_TIMEOUT) scripts/dist-test

demo: deps
	scripts/pg-clusters up
	scripts/demo

clusters-up: deps
	scripts/pg-clusters up

clusters-down:
	scripts/pg-clusters down

clean-clusters:
	scripts/pg-clusters destroy
