"""What the strainer rules compute at DAG-build time (plain Python, so the rule file stays declarative).

Torch-free: it is imported when the DAG is built.
"""

from __future__ import annotations

from dataclasses import dataclass

CAPTIONS = {
    "curves_id": "PSNR against test-time iterations for in-domain fitting (the paper's Fig. 2 setting): SIREN from "
    "its standard initialisation, SIREN fine-tuned from a fit of another image, a MAML initialisation, and STRAINER "
    "encoders learned from 1 and 10 training images with fresh heads; mean over the test images, band +-1 std.",
    "curves_ood": "Out-of-domain fitting (Table 2 setting): initialisations learned on the source dataset, fitted "
    "to the test images of other datasets; mean +-1 std over test images.",
    "reconstructions": "Ground truth and each method's reconstruction of held-out test images, early in the fit "
    "and at the end (PSNR in the titles).",
    "ablation": "Ablations: number of shared encoder layers in STRAINER (left, the paper's Fig. 7) and number of "
    "training images (right); SIREN for reference.",
    "inverse": "Inverse problems (Table 6): super-resolution from a box-downsampled image and denoising, SIREN "
    "against STRAINER; PSNR against the clean image per iteration and the final reconstructions.",
    "shape3d": "3D (the paper's Fig. 12): an occupancy SIREN fitted to the Thai statue from a STRAINER encoder "
    "trained on ten ShapeNet chairs, from SIREN's initialisation and from a random encoder; IoU per iteration and "
    "the middle slice of the occupancy at the reported iterations (paper scale only).",
}


@dataclass(frozen=True)
class StrainerLayout:
    """Experiments and paths of one scale's strainer DAG (from the validated config block)."""

    root: str            # results/{scale}/strainer
    datasets: tuple[str, ...]
    source: str
    ood_targets: tuple[str, ...]
    shapes: tuple[str, ...] = ()  # the 3D experiment's (source, target) datasets, if the scale has one
    shape_grid: int = 0

    @classmethod
    def from_config(cls, root: str, cfg: dict | None) -> "StrainerLayout":
        if cfg is None:  # strainer not selected: an empty layout
            return cls(root, (), "", ())
        data, s3 = cfg["data"], cfg.get("shape3d")
        return cls(root, tuple(data["datasets"]), data["source"], tuple(data["ood_targets"]),
                   (s3["source"], s3["target"]) if s3 else (), s3["grid"] if s3 else 0)

    @property
    def experiments(self) -> list[str]:
        """Experiments of the `strainer_fit` rule."""
        if not self.datasets:
            return []
        return ([f"in_domain_{d}" for d in self.datasets] + (["ood"] if self.ood_targets else [])
                + ["ablation", "inverse", "speed"])

    @property
    def parts(self) -> list[str]:
        """Every metrics part (without the seed): the fit experiments and, where configured, the 3D one
        (rule `strainer_shape3d`)."""
        return self.experiments + (["shape3d"] if self.shapes else [])

    @property
    def figure_experiments(self) -> list[str]:
        return [e for e in self.experiments if e != "speed"] + (["shape3d"] if self.shapes else [])

    @property
    def figures(self) -> list[str]:
        """The figures of this scale: every caption's, Fig. 12's only where the 3D experiment runs."""
        return [name for name in CAPTIONS if name != "shape3d" or self.shapes]

    def inits(self, dataset: str, seed) -> str:
        return f"{self.root}/inits/{dataset}_s{seed}.pt"

    def arrays(self, experiment: str, seed) -> str:
        return f"{self.root}/arrays/{experiment}_s{seed}.npz"

    def kind(self, experiment: str) -> str:
        """The `fit --experiment` value of an experiment name."""
        return "in_domain" if experiment.startswith("in_domain_") else experiment

    def data_of(self, experiment: str) -> list[str]:
        """Datasets an experiment reads: its in-domain dataset, or the source (+ the out-of-domain targets)."""
        if experiment.startswith("in_domain_"):
            return [experiment[len("in_domain_"):]]
        return [self.source] + (list(self.ood_targets) if experiment == "ood" else [])

    def inits_of(self, experiment: str) -> list[str]:
        """Datasets whose inits an experiment reads (speed also reports every dataset's training cost)."""
        return list(self.datasets) if experiment == "speed" else self.data_of(experiment)[:1]
