"""Exports: merged models (GGUF and Ollama come later)."""
