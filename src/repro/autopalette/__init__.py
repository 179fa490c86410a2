"""AutoPalette (Yuan et al., NeurIPS 2024): colour-reduced dataset distillation on top of trajectory matching.

Pipeline (workflow/rules/autopalette.smk; runs and the table cells they fill in config/autopalette.yaml):

  expert   `experts.py`    ConvNet experts trained on real images; flat parameters after every epoch. One rule
                           output per expert, shared by every run of its dataset and scale.
  select   `selection.py`  per-class stochastic-greedy generalised graph cut on Median-Cut-quantised candidates
                           (similarity of last-layer gradients), one selection per budget: the colour-guided init.
  run      `pipeline.py`   builds one set (random real / quantised real / MTT / DATM / AutoPalette), distils it
                           (`distill.py`: MTT with the DATM additions of the official code; palette net and losses in
                           `palette.py`), stores it (network-space floats, index maps + palettes for AutoPalette,
                           an 8-bit rendering), evaluates fresh nets on the floats (`evaluate.py`), and writes its
                           storage account and any control or quantised-variant evaluations.
  figure   `figures.py`    distilled images with palettes; accuracy against the number of colours.
  bench    `bench.py`      seconds per expert epoch and per distillation iteration at a scale's settings.

By hand:  PYTHONPATH=src python -m repro.autopalette run --scale smoke --run autopalette_c10_ipc1 --seed 0 \\
            --train data/prepared/cifar10/train.npz --test data/prepared/cifar10/test.npz \\
            --experts results/smoke/autopalette/experts/cifar10/expert_{0,1}.pt \\
            --selection results/smoke/autopalette/selection/cifar10_k64.npz --out-set set.npz --out part.csv
"""
