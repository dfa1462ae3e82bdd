"""Attention kernels: fused Triton cross-frame attention, a portable SDPA fallback and their dispatch."""
