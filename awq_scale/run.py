"""The AWQ step of a conversion: calibration tokens, the saved-results folder, resume, and the search itself.

prepare_awq(...) returns an AwqApplier that the converter asks for each tensor's float values and importance.
Results are saved per block under ~/.cache/awq-gguf/awq/<model>-<type>-<key>/ (AWQ_GGUF_CACHE moves it), keyed
by model, calibration, weight types and settings:
  - a finished folder with the same key is reused as is;
  - an unfinished one is continued with --resume (from the last finished block), else searched again;
  - --scales FOLDER uses that folder: same key -> as above; another weight type -> its scales and importance
    are re-applied (clip bounds dropped); another model, calibration or settings -> refused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from .apply import AwqApplier
from .awq import AwqSettings, iter_awq
from .results import ResultsError, SearchKey, SearchResults, calib_digest, default_root

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AwqRequest:
    calib: Path | None  # None: data-free calibration
    n_samples: int
    seqlen: int
    settings: AwqSettings
    resume: bool = False
    scales: Path | None = None
    type_name: str = ""


def calibration(source, req: AwqRequest) -> tuple[torch.Tensor, str]:
    """(tokens [n, L], the calibration's identity for the results key)."""
    from .calib import calibration_tokens
    from .datafree import DATAFREE_VERSION, generate_calibration

    if req.calib is not None:
        tokens = calibration_tokens(req.calib, source, req.n_samples, req.seqlen)
        return tokens, calib_digest(tokens)
    tokens = generate_calibration(source, req.n_samples, req.seqlen, seed=req.settings.seed,
                                  device=req.settings.device, progress=req.settings.progress)
    return tokens, f"datafree:v{DATAFREE_VERSION}:" + calib_digest(tokens)


def prepare_awq(source, types: dict, req: AwqRequest) -> tuple[AwqApplier, SearchResults]:
    tokens, calib_id = calibration(source, req)
    key = SearchKey.of(source, calib_id, types, req.settings)
    use_clip = True
    if req.scales is not None:
        results = SearchResults.open(req.scales)
        why = results.mismatch(key, same_types=False)
        if why:
            raise ResultsError(f"cannot use the AWQ results in {req.scales}: {why}")
        if results.mismatch(key) is not None:  # another weight type: re-apply what does not depend on it
            if not results.complete:
                raise ResultsError(f"the AWQ results in {req.scales} are unfinished and were searched for "
                                   f"{results.meta.get('type')}; finish them with that type and --resume first")
            logger.warning("re-applying AWQ scales searched for %s to %s (clip bounds dropped)",
                           results.meta.get("type"), req.type_name)
            use_clip = False
    else:
        folder = default_root() / f"{source.name}-{req.type_name}-{key.digest()}"
        results = SearchResults.open(folder) if (folder / "meta.json").is_file() else None
        if results is not None and results.mismatch(key) is not None:
            results = None  # a digest collision or a damaged folder: search again
        if results is not None and not results.complete and not req.resume:
            logger.warning("found an unfinished AWQ search in %s; searching again (continue it with --resume)",
                           folder)
            results = None
        if results is None:
            results = SearchResults.create(folder, key, source.n_layer, source.name, req.type_name)

    start = results.finished()
    if start <= source.n_layer:
        if start:
            logger.warning("resuming the AWQ search at block %d of %d (%s)", start, source.n_layer, results.folder)
        for i, result in iter_awq(source, types, tokens, req.settings, start=start):
            results.save(i, result)
    else:
        logger.warning("reusing the AWQ search results in %s", results.folder)
    records = {i: results.load(i) for i in range(source.n_layer + 1)}
    return AwqApplier(source, records, use_clip=use_clip), results
