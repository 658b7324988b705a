"""llama.cpp importance matrices (imatrix): collect them with our calibration pass, write and read the file.

The file is llama-imatrix's GGUF format (general.type = "imatrix"): for each weight matrix W, the tensors
"W.in_sum2" (sum over calibration tokens of x_j^2, one value per input column) and "W.counts" (the number of
tokens), plus imatrix.datasets / chunk_count / chunk_size. llama-quantize --imatrix reads it, and so does
`awq-gguf convert --imatrix`: importance_j = in_sum2_j / count, the per-column weight of the rounding error.
The older .dat format is not read (llama-imatrix --in-file old.dat -o new.gguf converts it).
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import torch
from tqdm import tqdm

from awq_gguf.convert.output_file import AtomicOutput
from awq_gguf.errors import AwqGgufError

from .block import INPUT_OF, LINEARS, block_config, block_params, embed, forward_in_chunks, rms_norm


class ImatrixError(AwqGgufError):
    """An imatrix file is missing, malformed or does not fit the model."""


def collect_imatrix(source, tokens: torch.Tensor, chunk_seqs: int = 8,
                    progress: bool = True) -> tuple[dict[str, torch.Tensor], int]:
    """({tensor name: sum of x^2 [cols] over all tokens}, token count) for every block linear and the output.

    Float forward block by block, one block's weights in memory at a time; for a tied embedding the output
    statistics are filed under token_embd.weight, the matrix llama.cpp multiplies with there.
    """
    cfg = block_config(source)
    by_name = {t.name: t for t in source.tensors}
    h = embed(by_name["token_embd.weight"].load_checked(), tokens.long())  # [n, L, C]
    sums: dict[str, torch.Tensor] = {}

    for i in tqdm(range(source.n_layer), desc="imatrix", unit="block", disable=not progress):
        p = block_params(source, i)
        acc: dict[str, torch.Tensor] = {}

        def capture(name: str, x: torch.Tensor) -> None:
            s = x.reshape(-1, x.shape[-1]).double().pow(2).sum(0)  # [cols]
            acc[name] = acc[name] + s if name in acc else s

        forward_in_chunks(p, h, cfg, chunk_seqs, capture)
        for stem in LINEARS:
            sums[f"blk.{i}.{stem}.weight"] = acc[INPUT_OF[stem]].float()
    x = rms_norm(h, by_name["output_norm.weight"].load_checked(), cfg.eps).reshape(-1, h.shape[-1])
    out_name = "output.weight" if "output.weight" in by_name else "token_embd.weight"
    sums[out_name] = x.double().pow(2).sum(0).float()
    return sums, int(tokens.numel())


def write_imatrix(path: Path, sums: dict[str, torch.Tensor], count: int, dataset: str, chunk_size: int,
                  force: bool = False) -> None:
    """Write llama-imatrix's GGUF format (see the module docstring); `path` is written whole or not at all."""
    writer = gguf.GGUFWriter(path=None, arch="imatrix")
    writer.add_type(gguf.GGUFType.IMATRIX)
    writer.add_array(gguf.Keys.IMatrix.DATASETS, [dataset])
    writer.add_uint32(gguf.Keys.IMatrix.CHUNK_COUNT, max(1, count // max(chunk_size, 1)))
    writer.add_uint32(gguf.Keys.IMatrix.CHUNK_SIZE, chunk_size)
    for name, s in sums.items():
        writer.add_tensor(f"{name}.in_sum2", s.float().numpy().reshape(1, -1))  # ggml [cols, 1]
        writer.add_tensor(f"{name}.counts", np.full((1, 1), float(count), dtype=np.float32))
    with AtomicOutput(path, force) as tmp:
        try:
            writer.write_header_to_file(tmp)
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
        finally:
            writer.close()


def read_imatrix(path: Path) -> dict[str, torch.Tensor]:
    """{weight name: importance [cols] = in_sum2 / count} from an imatrix GGUF file."""
    if not path.is_file():
        raise ImatrixError(f"imatrix file {path} does not exist")
    try:
        reader = gguf.GGUFReader(path)
    except Exception as e:
        raise ImatrixError(f"{path} is not an imatrix GGUF file ({type(e).__name__}: {e}); a legacy .dat file can "
                           f"be converted with: llama-imatrix --in-file {path.name} -o imatrix.gguf") from None
    tensors = {t.name: np.asarray(t.data, dtype=np.float32) for t in reader.tensors}
    out: dict[str, torch.Tensor] = {}
    for name, s in tensors.items():
        if not name.endswith(".in_sum2"):
            continue
        w = name.removesuffix(".in_sum2")
        counts = tensors.get(f"{w}.counts")
        if counts is None:
            raise ImatrixError(f"{path}: {name} has no matching {w}.counts tensor")
        s = s.reshape(counts.size, -1)  # [n_mat, cols]
        c = counts.reshape(-1, 1)
        if (c <= 0).any():
            continue  # never activated: llama-quantize skips these too
        out[w] = torch.from_numpy((s / c).mean(0).astype(np.float32))  # experts averaged (dense models: n_mat = 1)
    if not out:
        raise ImatrixError(f"{path} holds no imatrix entries (no *.in_sum2 tensors)")
    return out


def make_imatrix(cfg) -> tuple[Path, int]:
    """`awq-gguf imatrix`: calibration pass over cfg.model (an ImatrixConfig) -> (file written, entries)."""
    from awq_gguf.convert.output_file import check_output
    from awq_gguf.convert.pipeline import resolve_model
    from awq_gguf.convert.source import open_source

    from .awq import AwqSettings
    from .run import AwqRequest, calibration

    check_output(cfg.out, cfg.force)
    source = open_source(resolve_model(cfg.model))
    try:
        req = AwqRequest(cfg.calib, cfg.calib_samples, cfg.calib_seqlen, AwqSettings(progress=cfg.progress))
        tokens, _ = calibration(source, req)
        sums, count = collect_imatrix(source, tokens, progress=cfg.progress)
    finally:
        source.close()
    dataset = str(cfg.calib) if cfg.calib is not None else "awq-gguf data-free calibration"
    write_imatrix(cfg.out, sums, count, dataset, chunk_size=int(tokens.shape[1]), force=cfg.force)
    return cfg.out, len(sums)
