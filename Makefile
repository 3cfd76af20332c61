# The two commands: `make run` and `make test`. Everything else is a step of those.
SHELL := /bin/bash
CARGO ?= cargo
STAGE := scripts/stage.sh

.PHONY: run test bench chaos e2e contract deploy-check images containers mutants services fmt lint check migrate seed openapi clean

## Start Postgres and Redis (or say how), then all five binaries in one process (gateway :8080).
run: services
	$(CARGO) run --bin shop-dev

## Services + formatting + lints + every test.
test: services
	@$(STAGE) fmt $(CARGO) fmt --all --check
	@$(STAGE) clippy $(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	@$(STAGE) tests scripts/test.sh
	@$(STAGE) contract scripts/contract.sh

## The system as five release processes on loopback, measured against this machine's ceilings
## (wrk, redis-benchmark, pgbench, bcrypt) in the same run; writes bench/results/<date>.*.
bench: services
	@$(STAGE) bench scripts/bench.sh

## Faults injected into the running system under a stream of orders (kills, a crash between
## reservation and commit, Redis lost, connections terminated, catalog down); one line each.
chaos: services
	@$(STAGE) chaos scripts/chaos.sh

## The storefront in headless Chromium (Debian's, driven by playwright-core from npm):
## shopper, failed-payment, admin-conflict and outage flows; screenshots in target/e2e/screenshots.
e2e: services
	@$(STAGE) e2e scripts/e2e.sh

## schemathesis (PyPI, pinned, in target/contract-venv) against a live system through the
## gateway: anonymous, user and admin passes; fails on any 5xx or off-document answer.
contract: services
	@$(STAGE) contract scripts/contract.sh

## Compose files, Dockerfile (hadolint) and Kubernetes manifests (kustomize + kubernetes-validate),
## without an engine or a cluster.
deploy-check:
	@$(STAGE) deploy-check scripts/deploy-check.sh

## The five service images built with podman from deploy/Dockerfile without a registry: a
## debootstrap base, host-built stripped release binaries; stand-ins for Postgres and Redis.
images:
	@$(STAGE) images scripts/images.sh

## The compose stack started with podman from those images, health-gated; a smoke run through
## the gateway (order paid on the socket, invariants), /metrics against the dashboard and alert
## rules; everything of the run removed afterwards.
containers:
	@$(STAGE) containers scripts/containers.sh

## cargo-mutants (crates.io) over the domain code listed in .cargo/mutants.toml: each mutant is
## built and its package's tests run; survivors are listed in target/mutants/mutants.out.
## Not part of CI (hours on two cores): `make mutants SHARD=0/4` runs a quarter.
mutants: services
	@$(STAGE) mutants scripts/mutants.sh

## Make sure Postgres and Redis answer on loopback and the database exists.
services:
	@$(STAGE) services scripts/services.sh

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

check:
	$(CARGO) check --workspace --all-targets

## Apply every service's migrations to DATABASE_URL and exit.
migrate: services
	$(CARGO) run --bin shop-dev -- migrate

## Load the demo catalogue (once); `make seed COUNT=100000` generates that many products.
seed: services
	$(CARGO) run --bin shop-dev -- seed $(if $(COUNT),--count $(COUNT),)

## Regenerate the checked-in API documents under proto-docs/ from the code.
openapi:
	UPDATE_OPENAPI=1 $(CARGO) test --workspace --exclude gateway --test api -- openapi
	# The gateway merges the services' documents: regenerate it after them.
	UPDATE_OPENAPI=1 $(CARGO) test -p gateway --test api -- docs::the_checked_in

clean:
	$(CARGO) clean
