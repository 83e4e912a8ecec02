"""Dense flow evaluation on TSS (FG3DCar, JODS, PASCAL) with the reference's conventions (PROTOCOL §8).

Each pair folder is evaluated in both directions. The two images are padded right/bottom to a
common size; the padded images are written once per folder under the run's derived-image cache
so that features are cached per image like everywhere else. Every target cell is matched to a
source cell; the cell flow is upsampled to pixels and PCK counts valid target pixels whose
end-point error is ≤ α · max(H, W) of the unpadded source. (The released script scales the cell
flow by L/60, its G hard-coded; here by L/G, the same at the paper's G = 60.)

Three forms are computed (AMBIG-11), all from one nearest-neighbour search per descriptor and metric:

- ``paper``: the paper's descriptors (normalised fusion) matched by cosine, flow from the integer
  source row — the method as the paper describes it;
- ``reference``: exactly what the released ``pck_tss.py`` computes under the torch it pins — raw
  features, raw concatenation for the fusion, nearest neighbour by L2, and the source row by true
  division (``torch.div``, row = r + c/G), the numbers that script prints;
- ``raw_l2``: the released script's matcher (raw, L2) with the integer source row, which separates
  the effect of the division from that of the missing normalisation.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from ..data.datasets.derived import cached_png, derived_key
from ..data.datasets.tss import TSSSample, pair_folder_counts, read_sample
from ..errors import ConfigError
from ..profiles.runs import Run
from ..protocol.bootstrap import RESAMPLES, SEED, interval, stratified_sums
from ..protocol.flow import dense_flow_to_image, flow_from_nn, tss_pck, weighted_average
from ..protocol.matching import dense_nearest
from .pair_features import ImagePair, Method, pair_features


@dataclass(frozen=True)
class TSSForm:
    """One way of running the dense matcher (AMBIG-11): ``raw`` features (raw concatenation for the
    fusion) or the paper's descriptors, the NN ``metric``, and the source row by ``true_division``."""

    raw: bool
    metric: str
    true_division: bool


FORMS = {"paper": TSSForm(raw=False, metric="cosine", true_division=False),
         "reference": TSSForm(raw=True, metric="l2", true_division=True),
         "raw_l2": TSSForm(raw=True, metric="l2", true_division=False)}
"""The TSS forms by name; see the module docstring."""
TSS_ALPHAS = (0.01, 0.05, 0.10, 0.15)


def reference_form(method: Method) -> Method:
    """The released TSS script's version of a method: the fusion is a raw concatenation (AMBIG-11)."""
    return replace(method, fusion="concat") if method.kind == "Fuse" else method


def _padded_paths(run: Run, sample: TSSSample, src: np.ndarray, trg: np.ndarray) -> tuple[Path, Path]:
    """The padded pair images as PNG files, keyed by each source's content and the padded size."""
    folder = run.derived_dir / "tss" / sample.subset / sample.pair_dir
    paths = []
    for source, array in ((sample.src_image, src), (sample.trg_image, trg)):
        key = derived_key([source], {"derivation": "tss-pad-right-bottom-1", "padded_hw": list(array.shape[:2])})
        paths.append(cached_png(folder / f"{source.stem}_padded-{key}.png", lambda array=array: Image.fromarray(array)))
    return paths[0], paths[1]


def evaluate_tss(samples: list[TSSSample], methods: dict[str, Method], run: Run,
                 forms: tuple[str, ...] = tuple(FORMS)) -> pd.DataFrame:
    """One row per (sample, method, form, α): the sample's PCK in % (PROTOCOL §8, AMBIG-11).

    ``forms`` are names of :data:`FORMS`; forms that share descriptors and metric share one search.
    """
    unknown = sorted(set(forms) - set(FORMS))
    if unknown or not forms:
        raise ConfigError(f"unknown TSS form(s) {unknown or list(forms)}; choose from {list(FORMS)}")
    variants = {(name, raw): (reference_form(method) if raw else method)
                for name, method in methods.items() for raw in {FORMS[f].raw for f in forms}}
    rows = []
    for sample in tqdm(samples, desc="TSS samples", unit="sample", disable=not run.progress):  # pragma: no mutate  (progress bar)
        data = read_sample(sample)
        src_path, trg_path = _padded_paths(run, sample, data.src, data.trg)
        features = pair_features(ImagePair(src_path, trg_path), variants, run.grid, run.sd_features,
                                 run.dino_features)
        nearest: dict = {}
        for name in methods:
            for form in forms:
                spec = FORMS[form]
                key = (name, spec.raw, spec.metric)
                if key not in nearest:
                    nearest[key] = dense_nearest(*features.descriptors(variants[name, spec.raw]), metric=spec.metric)
                cells = flow_from_nn(nearest[key], run.grid, true_division=spec.true_division)
                flow = dense_flow_to_image(cells, data.trg.shape[:2])
                for alpha in TSS_ALPHAS:
                    rows.append({"subset": sample.subset, "pair_dir": sample.pair_dir, "direction": sample.direction,
                                 "method": name, "form": form, "alpha": alpha,
                                 "value": tss_pck(flow, data.flow, data.mask, data.l_pck, alpha)})
    return pd.DataFrame(rows)


def tss_summary(per_sample: pd.DataFrame, samples: list[TSSSample], folder_counts: dict[str, int] | None = None,
                resamples: int = RESAMPLES, seed: int = SEED) -> pd.DataFrame:
    """Per-image mean per subset (AMBIG-12) and "Avg." weighted by pair folders per subset (PROTOCOL §16),
    with bootstrap intervals that resample pair folders (both directions together) within subsets.

    ``folder_counts`` defaults to the evaluated samples' own counts (the real dataset's are 195/81/124).
    """
    counts = folder_counts or pair_folder_counts(samples)
    wide = per_sample.pivot_table(index=["subset", "pair_dir"], columns=["method", "form", "alpha"], values="value",
                                  aggfunc="sum", sort=False)
    directions = per_sample.groupby(["subset", "pair_dir"], sort=False)["direction"].nunique().reindex(wide.index)
    values = np.column_stack([directions.to_numpy(float), wide.to_numpy(float)])
    subsets, point, replicates = stratified_sums(values, wide.index.get_level_values("subset"), resamples, seed)
    means, replicate_means = point[:, 1:] / point[:, :1], replicates[..., 1:] / replicates[..., :1]
    average = weighted_average(dict(zip(subsets, means)), counts)
    replicate_average = weighted_average(dict(zip(subsets, np.moveaxis(replicate_means, 1, 0))), counts)
    rows = []
    for column, (method, form, alpha) in enumerate(wide.columns):
        cells = [(subset, means[s, column], replicate_means[:, s, column]) for s, subset in enumerate(subsets)]
        for subset, value, spread in cells + [("Avg.", average[column], replicate_average[:, column])]:
            low, high = interval(spread)
            rows.append({"method": method, "form": form, "alpha": alpha, "subset": subset, "value": float(value),
                         "ci_low": float(low), "ci_high": float(high)})
    return pd.DataFrame(rows)
