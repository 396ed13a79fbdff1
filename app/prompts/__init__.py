"""Prompt registry: versioned templates with labels, rendering, A/B experiments and shadow runs."""
