"""Exports: merged models, GGUF files (llama.cpp's converter and quantizer) and Ollama Modelfiles."""
