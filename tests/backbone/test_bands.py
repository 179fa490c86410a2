"""Regression bands from measured spread (repro.report.spread / `python -m repro.report reference`)."""

from __future__ import annotations

import pandas as pd
import pytest

from repro.report import spread as S
from repro.report.cli import compare_reference, reference_bands


def _m(values: dict[str, float], seed: int = 0) -> pd.DataFrame:
    return pd.DataFrame([{"paper": "p", "table": "t", "row": r, "column": "c", "seed": seed, "unit": "", "value": v}
                         for r, v in values.items()])


def test_stable_numbers_get_a_multiple_of_their_numerics_spread():
    ref = _m({"stable": 10.0, "still": 5.0})
    bands = reference_bands(ref, {"threads1": _m({"stable": 10.001, "still": 5.0}),
                                  "avx2": _m({"stable": 9.998, "still": 5.0}),
                                  "seed1": _m({"stable": 12.0, "still": 6.0}, seed=1)}).set_index("row")
    assert bands.loc["stable", "spread_numerics"] == pytest.approx(0.002)
    assert bands.loc["stable", "spread_seed"] == pytest.approx(2.0)
    assert not bands.loc["stable", "chaotic"]
    # 4 x 0.002 is below a tenth of the seed spread (0.2): another machine's kernels may move it that far
    assert bands.loc["stable", "atol"] == pytest.approx(S.CHAOS_FRACTION * 2.0 + S.ATOL_FLOOR)
    assert bands.loc["still", "atol"] == pytest.approx(S.CHAOS_FRACTION * 1.0 + S.ATOL_FLOOR)
    fixed = reference_bands(_m({"c": 1.0}), {"avx2": _m({"c": 1.0}), "seed1": _m({"c": 1.0}, seed=1)})
    assert fixed["atol"].iloc[0] == pytest.approx(S.ATOL_FLOOR)  # moved by nothing: the floor only


def test_chaotic_numbers_get_their_seed_spread():
    """FID 419 on one CPU, 394 on another: rounding moves it like a new seed does."""
    ref = _m({"fid": 418.6})
    bands = reference_bands(ref, {"avx2": _m({"fid": 405.0}), "seed1": _m({"fid": 440.0}, seed=1),
                                  "seed2": _m({"fid": 400.0}, seed=2)})
    r = bands.iloc[0]
    assert r["chaotic"] and r["spread_seed"] == pytest.approx(21.4)
    assert r["atol"] == pytest.approx(max(S.SEED_MULTIPLE * 21.4, S.NUMERICS_MULTIPLE * 13.6) + S.ATOL_FLOOR)


def test_a_variant_missing_a_number_is_an_error():
    from repro.common.errors import UserError

    with pytest.raises(UserError, match="lacks 1 reference number"):
        reference_bands(_m({"a": 1.0, "b": 2.0}), {"avx2": _m({"a": 1.0}), "seed1": _m({"a": 1.0, "b": 2.0}, 1)})


def test_compare_uses_the_band_and_units(tmp_path):
    ref = reference_bands(_m({"a": 1.0}), {"avx2": _m({"a": 1.01}), "seed1": _m({"a": 2.0}, 1)})
    path = tmp_path / "ref.csv"
    ref.to_csv(path, index=False)
    ok = _m({"a": 1.03})
    assert compare_reference(path, ok) == []
    bad = compare_reference(path, _m({"a": 1.2}))  # band: max(4 x 0.01, 0.1 x 1.0)
    assert len(bad) == 1 and "outside" in bad[0]
    assert compare_reference(path, _m({"zzz": 1.0}))[0].endswith("missing (reference 1)")
    assert compare_reference(path, _m({"zzz": 1.0}), only_present=True) == []


def test_units_of_a_cell_share_their_largest_spread_and_chaos_keeps_the_numerics_band():
    def units(vals, seed=0):
        return pd.DataFrame([{"paper": "p", "table": "t", "row": "tina", "column": "ID", "seed": seed,
                              "unit": f"task{i}", "value": v} for i, v in enumerate(vals)])
    ref = units([50.0, 60.0, 70.0])
    bands = reference_bands(ref, {"avx2": units([50.0, 61.0, 70.0]), "seed1": units([50.5, 60.0, 71.0], seed=1)})
    assert list(bands["spread_numerics"]) == [1.0, 1.0, 1.0] and list(bands["spread_seed"]) == [1.0, 1.0, 1.0]
    # chaotic (numerics moved as far as a seed): the band is never narrower than the numerics band
    assert bands["chaotic"].all()
    assert bands["atol"].iloc[0] == pytest.approx(max(S.SEED_MULTIPLE, S.NUMERICS_MULTIPLE) * 1.0 + S.ATOL_FLOOR)


def test_spread_refuses_a_workdir_an_earlier_run_left(tmp_path, monkeypatch):
    """A variant folder with outputs of an earlier (or killed) spread would stand in for this run's: refused before
    anything runs."""
    ran = []
    monkeypatch.setattr(S, "run_variant", lambda *a, **k: ran.append(a))
    (tmp_path / "other").mkdir()  # empty: fine
    (tmp_path / "default" / "results").mkdir(parents=True)
    with pytest.raises(SystemExit, match=r"default not empty: each variant runs from scratch"):
        S.main(["--paper", "ddpm", "--variants", "default", "other", "--workdir", str(tmp_path)])
    assert ran == []
    S.main(["--paper", "ddpm", "--variants", "other", "seed1", "--workdir", str(tmp_path)])
    assert [a[1].name for a in ran] == ["other", "seed1"]
