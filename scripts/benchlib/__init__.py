"""scripts/bench's parts: see scripts/bench for what the benchmark measures."""
