"""What the tina rules compute at DAG-build time (plain Python, so that the rule file stays declarative).

Torch-free: it is imported when the DAG is built. Each run of the scale's block (`main`; at paper scale also the size
study `size_<arch>`, the extra datasets `data_<name>` and the generator ablations `abl_<name>`) has its own tasks, zoo
and generators under results/<scale>/tina/<run>/ (an ablation reuses the main run's zoo).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from repro.tina.config import MAIN, resolve, runs, zoo_run

__all__ = ["CAPTIONS", "MAIN", "PART_PATTERN", "RUN_PATTERN", "STUDY_TABLE", "TinaLayout"]

CAPTIONS = {
    "acc_distribution": "Per-task accuracy of the models Tina generates from the class names against the fine-tuned "
    "p-models and the baselines, on in-distribution (seen classes, new combinations) and out-of-distribution "
    "(at least one held-out class) test tasks; right: generated against fine-tuned accuracy, one point per task.",
    "scaling": "Mean task accuracy of generated models against the number of training tasks (p-models) the "
    "generator was trained on; horizontal lines: fine-tuned p-models (dashed) and the generic model (dotted).",
}
# Study runs write their rows to one table each.
STUDY_TABLE = {"size": "sizes", "data": "datasets", "abl": "ablations"}
RUN_PATTERN = r"main|size_[a-z0-9_]+|data_[a-z0-9_]+|abl_[a-z0-9_]+"
PART_PATTERN = r"([a-z0-9_]+_)?eval_s\d+"


@dataclass(frozen=True)
class TinaLayout:
    """Runs, inputs and paths of one scale's tina DAG (from the validated config block)."""

    root: str                                   # results/{scale}/tina
    block: dict | None                          # the scale's config block (None: tina not selected)
    prepared: Callable[[str, str], str]         # (dataset, split) -> prepared .npz

    @property
    def runs(self) -> list[str]:
        """Every run of the block. Each dataset's prepared split is made by the data rules (Mini-ImageNet and
        Caltech-101 are fetched through the registry when the mirror lacks them), so no run depends on the mirror."""
        return [MAIN] if self.block is None else runs(self.block)

    @property
    def scaling(self) -> list[str]:
        return [f"cond_n{k}" for k in self.block["eval"]["scaling_tasks"]] if self.block else []

    @property
    def prompts(self) -> bool:
        ev = self.block["eval"] if self.block else {}
        return bool(ev.get("prompt_templates") or ev.get("image_shots"))

    def data(self, run: str, split: str) -> str:
        """The prepared file a run reads as `split` (train/test); a run with a source split reads that one file."""
        d = resolve(self.block, zoo_run(run))["data"]
        return self.prepared(d["dataset"], d.get("source_split") or split)

    def zoo_dir(self, run: str) -> str:
        return f"{self.root}/{zoo_run(run)}"

    def generators(self, run: str) -> dict[str, str]:
        """Name in the tables -> generator variant (cond_n<K>: trained on the first K tasks). Study runs train only
        Tina's conditional generator."""
        if run != MAIN:
            return {"tina": "cond"}
        return {"tina": "cond", "uncond": "uncond", **{v: v for v in self.scaling}}

    @staticmethod
    def part(run: str, seed: int) -> str:
        return f"eval_s{seed}" if run == MAIN else f"{run}_eval_s{seed}"

    @staticmethod
    def part_run_seed(part: str) -> tuple[str, int]:
        """'eval_s0' -> ('main', 0); 'size_convnet33k_eval_s1' -> ('size_convnet33k', 1)."""
        head, _, seed = part.rpartition("eval_s")
        return (head[:-1] or MAIN), int(seed)

    def parts(self, seeds: list[int]) -> list[str]:
        return [self.part(r, s) for r in self.runs for s in seeds]

    def eval_inputs(self, wildcards) -> dict:
        run, seed = self.part_run_seed(wildcards.part)
        out = {"zoo": f"{self.zoo_dir(run)}/zoo.pt", "text": f"{self.zoo_dir(run)}/text_embeddings.npz",
               "test": self.data(run, "test"),
               "gens": [f"{self.root}/{run}/generators/{v}_s{seed}.pt" for v in self.generators(run).values()]}
        if run == MAIN and self.prompts:
            out["prompts"] = f"{self.root}/{MAIN}/prompts_s{seed}.pt"
        return out

    def eval_args(self, wildcards, input) -> str:
        run, seed = self.part_run_seed(wildcards.part)
        gens = " ".join(f"{k}={self.root}/{run}/generators/{v}_s{seed}.pt" for k, v in self.generators(run).items())
        args = f"--run {run} --seed {seed} --gen {gens}"
        if "prompts" in input.keys():
            args += f" --prompts {input.prompts}"
        if run != MAIN:
            kind, label = run.split("_", 1)
            args += f" --study '{STUDY_TABLE[kind]}={label}'"
        return args
