# Benchmarks against the Node reference (not tests). `script/setup --test` installs the servers.
.PHONY: bench bench-quick setup-bench

setup-bench:
	@[ -x .venv/bin/python ] && [ -d node_modules/open-easyrtc ] || script/setup --test
	@.venv/bin/python -c "import matplotlib" 2>/dev/null || .venv/bin/pip install -q matplotlib

bench: setup-bench
	.venv/bin/python bench/run.py

bench-quick: setup-bench
	.venv/bin/python bench/run.py --quick
