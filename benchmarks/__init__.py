"""densebench benchmarks: the experiment matrix, synthetic datasets, runner and reports."""
