"""Fuzz: thousands of mutated GGUF headers through the runner's loader (and a 2-token forward when one loads).

Every outcome must be a successful load or an AwqGgufError with a one-line message; any other exception is a
bug, and a load that takes over 5 s counts as a hang (SIGALRM). The loader validates every count, length and
offset before gguf.GGUFReader sees the file (runner/gguf_check.py), so no mutation can make it loop or read
out of bounds. Bounded by a time budget: the test stops early, having run at least MIN_CASES, if the machine is slow.
"""

from __future__ import annotations

import random
import signal
import struct
import time
from collections import Counter
from pathlib import Path

import pytest

from awq_gguf.errors import AwqGgufError
from awq_gguf.runner.model import Model
from synthetic_gguf import write_model_gguf

N_CASES = 3000
MIN_CASES = 1000
BUDGET_S = 40.0
HANG_S = 5

EXTREMES = [0, 1, 2, 3, 7, 31, 32, 255, 2**16, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**48, 2**63 - 1, 2**63, 2**64 - 1]


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang()


def _mutate(base: bytes, header_end: int, tensor_info_start: int, rng: random.Random) -> tuple[bytes, str]:
    data = bytearray(base)
    kind = rng.choice(("bytes", "int", "int", "truncate", "structure"))
    if kind == "truncate":
        n = rng.randrange(0, len(base))
        return bytes(data[:n]), f"truncate at {n}"
    if kind == "bytes":
        desc = []
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(0, header_end)
            data[pos] = rng.randrange(256)
            desc.append(pos)
        return bytes(data), f"bytes at {desc}"
    # Integers written over structure: the counts (8..24) and the tensor infos, or anywhere in the header.
    if kind == "structure":
        pos = rng.choice([8, 16, rng.randrange(tensor_info_start, header_end - 8)])
    else:
        pos = rng.randrange(0, header_end - 8)
    value = rng.choice(EXTREMES) if rng.random() < 0.7 else rng.getrandbits(64)
    width = rng.choice((4, 8))
    data[pos : pos + width] = struct.pack("<Q", value)[:width] if width == 8 else struct.pack("<I", value & 0xFFFFFFFF)
    return bytes(data), f"{width}-byte {value} at {pos}"


def test_mutated_headers_never_crash_or_hang(tmp_path):
    import gguf

    base_path = write_model_gguf(tmp_path / "base.gguf", tensor_type="Q8_0")
    base = base_path.read_bytes()
    reader = gguf.GGUFReader(base_path)
    header_end = reader.data_offset
    tensor_info_start = min(t.field.offset for t in reader.tensors)
    target = tmp_path / "m.gguf"
    rng = random.Random(20261127)
    outcomes: Counter[str] = Counter()
    old = signal.signal(signal.SIGALRM, _alarm)
    start = time.monotonic()
    try:
        for i in range(N_CASES):
            if time.monotonic() - start > BUDGET_S:
                break
            data, desc = _mutate(base, header_end, tensor_info_start, rng)
            target.write_bytes(data)
            signal.setitimer(signal.ITIMER_REAL, HANG_S)
            try:
                m = Model.load(target, n_ctx=8, backend="torch", threads=1)
                m.forward([1, 2], m.new_cache())
                outcomes["loaded"] += 1
            except AwqGgufError as e:
                msg = str(e)
                assert msg and "\n" not in msg, f"case {i} ({desc}): multi-line error {msg!r}"
                outcomes[type(e).__name__] += 1
            except _Hang:
                pytest.fail(f"case {i} ({desc}): load took over {HANG_S} s")
            except Exception as e:  # noqa: BLE001 -- anything else is the bug this test looks for
                pytest.fail(f"case {i} ({desc}): {type(e).__name__}: {e}")
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        signal.signal(signal.SIGALRM, old)
    total = sum(outcomes.values())
    print(f"{total} mutated headers in {time.monotonic() - start:.1f} s: {dict(outcomes)}")
    assert total >= MIN_CASES, f"only {total} cases in {BUDGET_S} s"
    assert outcomes["CorruptModelError"] > total // 4  # the mutations do reach the checks
