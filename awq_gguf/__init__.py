"""awq-gguf: activation-aware weight quantization into GGUF files for llama.cpp."""

__version__ = "0.1.0"
