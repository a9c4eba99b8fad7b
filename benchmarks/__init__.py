"""Benchmarks for cocostat: synthetic COCO-scale inputs and timing scripts."""
