"""Tina (Li et al., arXiv 2405.14132): text-conditioned diffusion that generates personalised classifiers.

Pipeline (paper sheet ../shared/papers/tina.md, sections 2-4): personalisation tasks (subsets of classes named by
text) -> a model zoo (a generic model on the whole dataset, one fine-tuned "p-model" per task: a whole ConvNet or
a head, `repro.tina.archs`) -> a diffusion transformer over the p-models' parameters conditioned on the class
names' text embeddings -> generated classifiers evaluated on each task's test images, beside the generic, direct
fine-tuning, fine-tuned p-model, retrieval, unconditional and shuffled-text baselines.
"""
