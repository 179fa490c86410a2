"""Tina (Li et al., arXiv 2405.14132): text-conditioned diffusion that generates personalised classifiers.

Pipeline (paper sheet ../shared/papers/tina.md, sections 2-4): personalisation tasks (subsets of classes named by
text) -> a model zoo (a generic model on the seen classes, one fine-tuned "p-model" per task) -> a diffusion
transformer over the p-models' parameters conditioned on the class names' text embeddings -> generated
classifiers evaluated on each task's test images, beside the generic, fine-tuned, retrieval and unconditional
baselines.
"""
