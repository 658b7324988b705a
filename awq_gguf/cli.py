"""The `awq-gguf` command line: parses arguments into config objects and calls the library. Nothing else."""

from __future__ import annotations

import json
import sys
from functools import wraps
from pathlib import Path
from typing import Callable, Optional

import typer

from awq_gguf.errors import AwqGgufError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Convert causal language models to GGUF files for llama.cpp, with AWQ.",
)


def _user_errors(fn: Callable) -> Callable:
    """AwqGgufError -> one line on stderr, exit code 2; Ctrl-C -> exit 130. No tracebacks for user errors."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except AwqGgufError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("interrupted; no output file was written", err=True)
            raise typer.Exit(130) from None

    return wrapper


def _log_to_stderr(quiet: bool) -> None:
    """Warnings (and, unless quiet, progress notes) of the library as plain lines on stderr."""
    import logging

    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s", stream=sys.stderr)
    for noisy in ("torch", "httpx", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@app.command()
@_user_errors
def convert(
    model: Optional[Path] = typer.Argument(None, help="Hugging Face model folder or .gguf file (default: the demo model)"),
    out: Optional[Path] = typer.Option(None, "-o", "--out", help="output file (default: <model-name>-<TYPE>.gguf here)"),
    type: str = typer.Option("Q4_K_M", "--type", "-t", help="weight type or llama.cpp mix: Q4_0, Q4_K_M, Q8_0, F16, ..."),
    method: Optional[str] = typer.Option(
        None, "--method", help="awq (activation-aware scales, the default) or rtn (plain rounding: seconds instead of "
        "minutes); with --imatrix the default is rtn"),
    calib: Optional[Path] = typer.Option(
        None, "--calib", help="calibration text (.txt, or .jsonl with a \"text\" field) for --method awq; "
        "default: data-free (the model writes its own calibration text, seeded)"),
    calib_samples: int = typer.Option(128, "--calib-samples", help="calibration sequences"),
    calib_seqlen: int = typer.Option(512, "--calib-seqlen", help="tokens per calibration sequence"),
    clip: bool = typer.Option(True, "--clip/--no-clip", help="AWQ's clipping search (never for q and k)"),
    refine: bool = typer.Option(True, "--refine/--no-refine",
                                help="AWQ: refine Q4_0/Q5_0/Q8_0 levels under the inputs' 32x32 block second "
                                     "moments (lower output error than per-column importance alone)"),
    resume: bool = typer.Option(False, "--resume", help="continue an interrupted AWQ search from its last block"),
    scales: Optional[Path] = typer.Option(
        None, "--scales", help="use this saved AWQ results folder (e.g. re-apply it to another --type)"),
    imatrix: Optional[Path] = typer.Option(
        None, "--imatrix", help="llama.cpp imatrix file (llama-imatrix or awq-gguf imatrix): importance for rtn"),
    device: str = typer.Option("cpu", "--device", help="where the AWQ search runs: cpu or cuda"),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch threads (default: torch's choice)"),
    force: bool = typer.Option(False, "--force", "-f", help="overwrite OUT if it exists"),
    pure: bool = typer.Option(False, "--pure", help="every weight matrix gets TYPE (no mix rules), as llama-quantize --pure"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
) -> None:
    """Convert MODEL to a GGUF file.

    \b
    Examples:
      awq-gguf convert                                   # the demo model (SmolLM2-135M-Instruct), AWQ, Q4_K_M
      awq-gguf convert ./Qwen2.5-1.5B --calib wiki.txt -t Q4_0        # AWQ calibrated on your own text
      awq-gguf convert ./Qwen2.5-1.5B --calib wiki.txt -t Q4_0 --resume   # after an interruption
      awq-gguf convert ./Llama-3.2-1B -t Q4_0 --method rtn -o llama-q4_0.gguf   # plain rounding, fast
      awq-gguf convert model.Q8_0.gguf -t Q5_K_M --method rtn --force  # requantize an existing GGUF
      awq-gguf convert ./m -t Q4_0 --imatrix imatrix.gguf  # rtn with llama.cpp's importance matrix
    """
    from awq_gguf.config import ConvertConfig
    from awq_gguf.convert.pipeline import convert_model

    _log_to_stderr(quiet)
    cfg = ConvertConfig(model=model, out=out, type=type, method=method, calib=calib, calib_samples=calib_samples,
                        calib_seqlen=calib_seqlen, clip=clip, refine=refine, resume=resume, scales=scales, imatrix=imatrix,
                        device=device, threads=threads, force=force, pure=pure, progress=not quiet)
    result = convert_model(cfg)
    typer.echo(result.summary())


@app.command()
@_user_errors
def imatrix(
    model: Optional[Path] = typer.Argument(None, help="Hugging Face model folder or .gguf file (default: the demo model)"),
    out: Path = typer.Option(Path("imatrix.gguf"), "-o", "--out", help="imatrix file to write (llama.cpp's GGUF format)"),
    calib: Optional[Path] = typer.Option(None, "--calib", help="calibration text (.txt or .jsonl); default: data-free"),
    calib_samples: int = typer.Option(128, "--calib-samples", help="calibration sequences"),
    calib_seqlen: int = typer.Option(512, "--calib-seqlen", help="tokens per calibration sequence"),
    force: bool = typer.Option(False, "--force", "-f", help="overwrite OUT if it exists"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
) -> None:
    """Write llama.cpp's importance matrix (imatrix) of MODEL from our calibration pass.

    \b
    The file is what llama-imatrix writes: use it with llama-quantize --imatrix, or awq-gguf convert --imatrix.
    Examples:
      awq-gguf imatrix ./Llama-3.2-1B --calib wiki.txt -o imatrix.gguf
      llama-quantize --imatrix imatrix.gguf model-f16.gguf model-q4_0.gguf Q4_0
    """
    from awq_gguf.awq_scale.imatrix import make_imatrix
    from awq_gguf.config import ImatrixConfig

    _log_to_stderr(quiet)
    cfg = ImatrixConfig(model=model, out=out, calib=calib, calib_samples=calib_samples, calib_seqlen=calib_seqlen,
                        force=force, progress=not quiet)
    path, n = make_imatrix(cfg)
    typer.echo(f"wrote {path}: {n} entries")


@app.command("eval")
@_user_errors
def eval_(
    file: Path = typer.Argument(..., help="GGUF file"),
    text: Path = typer.Option(..., "--text", help="plain UTF-8 text to score"),
    ctx: int = typer.Option(512, "--ctx", min=8, help="window length in tokens"),
    chunks: Optional[int] = typer.Option(None, "--chunks", min=1, help="score only the first N windows"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    backend: str = typer.Option("llama.cpp", "--backend", help="llama.cpp or runner (awq-gguf's own)"),
    device: str = typer.Option("cpu", "--device", help="the runner's device: cpu or cuda (--backend runner)"),
) -> None:
    """Perplexity of FILE under llama.cpp (or the runner), computed as llama-perplexity does.

    \b
    Examples:
      awq-gguf eval SmolLM2-135M-Instruct-Q4_K_M.gguf --text data/wiki.eval.txt
      awq-gguf eval model.gguf --text data/wiki.eval.txt --ctx 512 --chunks 50 --json
      awq-gguf eval model.gguf --text data/wiki.eval.txt --backend runner --device cuda
    """
    from awq_gguf.perplexity import perplexity, read_text

    if backend not in ("llama.cpp", "runner"):
        raise AwqGgufError(f"--backend must be llama.cpp or runner, not {backend!r}")
    if device != "cpu" and backend != "runner":
        raise AwqGgufError(f"--device {device} runs the runner: add --backend runner")
    if backend == "runner":
        from awq_gguf.runner.cli_commands import eval_runner

        result = eval_runner(file, read_text(text), ctx=ctx, chunks=chunks, progress=not as_json, device=device)
    else:
        result = perplexity(file, read_text(text), ctx=ctx, chunks=chunks, progress=not as_json)
    typer.echo(json.dumps(result.as_dict()) if as_json else f"ppl = {result.ppl:.4f}  ({result.n_tokens} tokens, {result.n_chunks} x {ctx})")


@app.command()
@_user_errors
def verify(
    file: Path = typer.Argument(..., help="GGUF file written by awq-gguf"),
    reference: Optional[Path] = typer.Option(None, "--reference", help="HF model folder (default: the file's source)"),
    text: Path = typer.Option(Path("data/wiki.eval.txt"), "--text", help="plain UTF-8 text"),
    ctx: int = typer.Option(512, "--ctx", min=8),
    chunks: int = typer.Option(8, "--chunks", min=1, help="windows of CTX tokens to compare"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Run FILE in llama.cpp and the reference in transformers on the same tokens, and compare.

    \b
    Examples:
      awq-gguf verify SmolLM2-135M-Instruct-F16.gguf --text data/wiki.eval.txt
      awq-gguf verify out.gguf --reference ./Qwen2.5-0.5B --chunks 4 --json
    """
    from awq_gguf.perplexity import read_text
    from awq_gguf.verify import verify as run_verify

    result = run_verify(file, reference, read_text(text), ctx=ctx, chunks=chunks)
    typer.echo(json.dumps(result.as_dict()) if as_json else result.report())


@app.command()
@_user_errors
def inspect(file: Path = typer.Argument(..., help="GGUF file")) -> None:
    """Print FILE's metadata and a per-type tensor summary (count, MiB, bits per weight).

    \b
    Example:
      awq-gguf inspect SmolLM2-135M-Instruct-Q4_K_M.gguf
    """
    from awq_gguf.inspect_file import render

    typer.echo(render(file))


from awq_gguf.runner.cli_commands import register as _register_runner  # noqa: E402  (run, bench)

_register_runner(app, _user_errors)


def main() -> None:
    app(prog_name="awq-gguf")


if __name__ == "__main__":
    sys.exit(main())
