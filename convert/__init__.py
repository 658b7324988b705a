"""The converter: Hugging Face folders or GGUF files in, GGUF files out."""
