"""srlib's tooling: what the `srlib` command runs, apart from the core the chapters import.

- `srlib.tools.cli`: the `srlib` command (train, upscale, evaluate, download, bench, notebook,
  sweep), all its arguments in one module.
- `srlib.tools.download`: the benchmark sets, DIV2K and the 291 training images: what to fetch.
- `srlib.tools.fetch`: how: checked, resumable downloads and safe, atomic extraction.
- `srlib.tools.bench`: training and inference speed on this machine.
- `srlib.tools.notebook`, `srlib.tools.sweep`: chapters as parameterised programs.
- `srlib.tools.distributed`: DDP training under torchrun; `srlib.tools.backends`: the
  process-wide speed switches (cuDNN autotuning, glibc keeping freed memory).
- `srlib.tools.experiments`, `srlib.tools.lapsrn`, `srlib.tools.record`: the long runs behind
  `results/`, and what each results file records of the run that made it.

The tools import the core (`srlib.*`); the core never imports the tools. Nothing is imported
here, so `import srlib.tools.download` loads only what downloading needs.
"""
