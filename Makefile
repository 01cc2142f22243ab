# Benchmarks against the Node reference (not tests). `script/setup --test` installs the servers.
# Override: make bench BENCH_SERVERS=ours,reference BENCH_ROUNDS=5 BENCH_ARGS="--only relay"
.PHONY: bench bench-quick bench-cluster setup-bench upgrade-deps lock

BENCH_SERVERS ?= ours,ours-tick0,ours-uvicorn,reference
BENCH_QUICK_SERVERS ?= ours,ours-uvicorn,reference
BENCH_ROUNDS ?= 3
BENCH_QUICK_ROUNDS ?= 1
BENCH_ARGS ?=

# The benchmark tools (matplotlib, httptools, py-spy) are in the locked dev set (requirements-dev.txt).
setup-bench:
	@[ -x .venv/bin/python ] && [ -d node_modules/open-easyrtc ] || script/setup --test

# Python dependencies: `make lock` after editing pyproject.toml's ranges (keeps the other pins);
# `make upgrade-deps` moves every pin to the newest release and runs the whole suite on them.
# Run it on purpose, at least once a month and before a release; commit requirements-*.txt when it is green.
lock:
	script/lock

upgrade-deps:
	script/lock --upgrade
	git --no-pager diff --stat -- requirements-dev.txt requirements-server.txt
	script/test

bench: setup-bench
	.venv/bin/python bench/run.py --servers $(BENCH_SERVERS) --rounds $(BENCH_ROUNDS) $(BENCH_ARGS)

bench-quick: setup-bench
	.venv/bin/python bench/run.py --quick --servers $(BENCH_QUICK_SERVERS) \
		--rounds $(BENCH_QUICK_ROUNDS) $(BENCH_ARGS)

# Cluster cost (bench/cluster.py): relays same-node vs cross-node vs one process, and a join
# storm over 1, 2 and 3 nodes; CPU of every node and redis-server. Results: bench/RESULTS.md.
BENCH_CLUSTER_ROUNDS ?= 3
bench-cluster: setup-bench
	.venv/bin/python bench/cluster.py --rounds $(BENCH_CLUSTER_ROUNDS) $(BENCH_ARGS)
