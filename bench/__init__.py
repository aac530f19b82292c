"""Benchmarks (`make bench`): side-by-side ratios against the floor and against peers, each
printed with its budget and a pass or a miss. Not timed tests: nothing here fails `make test`."""
