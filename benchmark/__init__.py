"""rgmim-bench: a benchmark suite for self-supervised learning on chest X-rays."""
