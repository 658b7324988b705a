"""The project's exceptions. Every one names what is wrong and what to do; the CLI prints it as one line, exit 2."""


class AwqGgufError(Exception):
    """Base class: a user-facing error the CLI reports as one line with exit code 2."""


class ModelNotFoundError(AwqGgufError):
    """The model path is missing, or a folder without config.json."""


class UnsupportedArchitectureError(AwqGgufError):
    """The model's architecture is not in convert.arch.ARCHITECTURES."""


class CorruptModelError(AwqGgufError):
    """A safetensors or GGUF input is truncated, corrupt or not of that format."""


class BadWeightError(AwqGgufError):
    """A weight holds NaN or Inf, or a shape the architecture does not expect."""


class UnknownTypeError(AwqGgufError):
    """--type names no supported weight type or mix."""


class OutputError(AwqGgufError):
    """The output exists (without --force) or its folder is not writable."""


class TokenizerError(AwqGgufError):
    """The model folder's tokenizer files are missing or of a kind the converter cannot export."""
