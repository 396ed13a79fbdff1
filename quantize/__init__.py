"""AWQ 4-bit weight-only quantization (W4A16) of local HF checkpoints: `llmgw quantize` (docs/quantize.md)."""
