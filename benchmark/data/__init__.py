"""Datasets, splits, label fractions, the decoded-image cache and batched views."""
