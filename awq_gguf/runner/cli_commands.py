"""The runner's CLI commands (`run`, `bench`), registered on awq_gguf.cli's app; heavy imports stay inside."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable, Optional

import typer


def register(app: typer.Typer, user_errors: Callable) -> None:
    app.command("run")(user_errors(run))
    app.command("bench")(user_errors(bench))


def run(
    file: Path = typer.Argument(..., help="GGUF file"),
    prompt: str = typer.Option(..., "-p", "--prompt", help="prompt text"),
    chat: bool = typer.Option(False, "--chat", help="wrap the prompt in the file's chat template"),
    n_predict: int = typer.Option(128, "-n", "--n-predict", min=0, help="tokens to generate at most"),
    temp: float = typer.Option(0.8, "--temp", min=0.0, help="sampling temperature; 0 is greedy"),
    seed: Optional[int] = typer.Option(None, "--seed", help="random seed (default: a fresh one)"),
    ctx: Optional[int] = typer.Option(None, "--ctx", min=8, help="context length (default: min(training, 4096))"),
    threads: Optional[int] = typer.Option(None, "--threads", "-t", min=1, help="CPU threads (default: all)"),
    backend: Optional[str] = typer.Option(None, "--backend", help="matmul backend: auto, torch, kernels"),
    device: str = typer.Option("cpu", "--device", help="cpu, or cuda (the project's CUDA kernels on the GPU)"),
) -> None:
    """Generate text from FILE with the runner, streaming tokens as they come.

    \b
    Examples:
      awq-gguf run SmolLM2-135M-Instruct-Q4_K_M.gguf -p "The capital of France is" -n 20 --temp 0
      awq-gguf run model.gguf --chat -p "Write a haiku about rain." --seed 1
      awq-gguf run model.gguf -p "Once upon a time" --device cuda
    """
    from awq_gguf.runner.device import load_runner
    from awq_gguf.runner.generate import Sampling, generate
    from awq_gguf.runner.tokenizer import Tokenizer

    sampling = Sampling(temp=temp, seed=seed)
    model = load_runner(file, device, n_ctx=ctx, backend=backend, threads=threads)  # first: clearest errors
    tok = Tokenizer(file)
    text = tok.chat_prompt(prompt) if chat else prompt
    ids = tok.encode(text, special=chat)
    if chat and len(ids) > 1 and ids[0] == ids[1] == tok.bos:  # the template wrote BOS and the vocab added one
        ids = ids[1:]
    dec = tok.decoder()
    out = sys.stdout
    if not chat:
        out.write(prompt)
    for token in generate(model, ids, n_predict, sampling, stop=tok.is_eog):
        out.write(dec.feed(token))
        out.flush()
    out.write(dec.flush() + "\n")
    out.flush()


def bench(
    file: Path = typer.Argument(..., help="GGUF file"),
    backend: Optional[str] = typer.Option(None, "--backend", help="runner matmul backend: auto, torch, kernels"),
    threads: Optional[int] = typer.Option(None, "--threads", "-t", min=1, help="CPU threads for both engines"),
    n_pp: int = typer.Option(512, "--pp", min=1, help="prompt tokens per pp run"),
    n_tg: int = typer.Option(128, "--tg", min=1, help="generated tokens per tg run"),
    reps: int = typer.Option(2, "--reps", min=1, help="repetitions (alternating engines)"),
    peer: bool = typer.Option(True, "--peer/--no-peer", help="measure llama.cpp (llama-cpp-python) alongside"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    device: str = typer.Option("cpu", "--device", help="cpu, or cuda (peer: the card's copy-bandwidth bound)"),
) -> None:
    """Prompt (pp512) and generation (tg128) speed of the runner, side by side with llama.cpp, same threads.

    With --device cuda the runner runs on the GPU and the peer is the copy-bandwidth bound of decoding (the
    file's weight bytes per token over the card's measured device-to-device copy bandwidth).

    \b
    Examples:
      awq-gguf bench SmolLM2-135M-Instruct-Q4_0.gguf
      awq-gguf bench model.gguf --threads 2 --reps 3 --json
      awq-gguf bench model.gguf --device cuda
    """
    from awq_gguf.runner.bench import bench as run_bench

    progress = None if as_json else (lambda msg: typer.echo(msg, err=True))
    report = run_bench(file, n_pp=n_pp, n_tg=n_tg, reps=reps, threads=threads, backend=backend, peer=peer,
                       progress=progress, device=device)
    typer.echo(json.dumps(report.as_dict()) if as_json else report.table())


def eval_runner(file: Path, text: str, ctx: int, chunks: Optional[int], progress: bool, device: str = "cpu"):
    """`awq-gguf eval --backend runner`: the runner's perplexity (CPU matmul backend from $AWQ_GGUF_BACKEND)."""
    from awq_gguf.runner.evaluate import runner_perplexity

    return runner_perplexity(file, text, ctx=ctx, chunks=chunks, progress=progress, device=device)
