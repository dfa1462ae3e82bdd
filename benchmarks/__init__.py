"""Throughput, memory and scaling benchmarks (`rdengine bench` runs them)."""
