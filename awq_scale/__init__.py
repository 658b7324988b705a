"""AWQ (activation-aware weight quantization) scales for GGUF, computed in PyTorch on a ModelSource.

  groups.py  the scaling groups per architecture, as data
  block.py   a functional float forward of one decoder block on GGUF-named tensors
  calib.py   calibration text -> token windows [n_samples, seqlen]
  search.py  the per-group scale search, scored with the real GGUF quantizer of each linear
  clip.py    the clipping search in the target format
  fold.py    folding scales into norms / previous linears and the scaled linears' columns
  awq.py     run_awq: all of it, block by block -> modified float tensors and per-column importance
"""
