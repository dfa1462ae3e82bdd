"""Inference engine: config, model, snippet plans, scheduling, alignment, refinement, pipeline."""
