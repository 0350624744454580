"""Resuming a bench (forensics/metaeval/bench.py, ``check_resume``): finished audits are read back
only when the audit settings are the ones they ran with."""

from __future__ import annotations

import pytest

from forensics.core.errors import ForensicsInputError
from forensics.metaeval.bench import BenchConfig, check_resume


def test_a_bench_resumes_with_its_own_settings_and_refuses_others(tmp_path):
    work = tmp_path / ".out.work"
    first = BenchConfig(seeds=(3,), profile="quick", settings={"relearning_attack": {"measure": "key_choice"}})
    check_resume(work, first)
    assert (work / "settings.json").is_file()
    check_resume(work, BenchConfig(seeds=(4, 5), profile="quick", settings=first.settings, models=("npo",)))
    with pytest.raises(ForensicsInputError, match=r"other settings \(settings\)"):
        check_resume(work, BenchConfig(profile="quick"))
    with pytest.raises(ForensicsInputError, match=r"dtype, profile"):
        check_resume(work, BenchConfig(profile="standard", dtype="bfloat16", settings=first.settings))


def test_bench_set_is_parsed_as_the_audit_s(tmp_path, capsys):
    from forensics.cli import main

    code = main(
        ["bench", "--zoo", str(tmp_path), "--out", str(tmp_path / "o"), "--set", "relearning_attack.measure=bleu"]
    )
    err = capsys.readouterr().err
    assert code != 0 and "relearning_attack" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_a_bench_refused_for_its_input_leaves_no_settings_record(tmp_path):
    from forensics.metaeval.bench import run_bench

    with pytest.raises(ForensicsInputError, match="no real-base zoo"):
        run_bench(tmp_path / "zoo", tmp_path / "out", BenchConfig(size="base", world="bio", seeds=(0,)), progress=False)
    assert list(tmp_path.iterdir()) == []  # a corrected re-run is not refused for other settings


def test_a_subset_bench_leaves_a_larger_unfinished_bench_s_audits_behind(tmp_path):
    """A bench that covered only some of the work folder's finished audits (``--models``) keeps the
    folder for the larger bench's re-run; one that covered them all removes it."""
    from forensics.metaeval.bench import finish_work

    work = tmp_path / ".out.work"
    npo, ga = work / "audits" / "seed0" / "npo", work / "audits" / "seed0" / "ga"
    for audit in (npo, ga):
        audit.mkdir(parents=True)
    (work / "audits" / "seed0" / ".idk.tmp-1").mkdir()  # an interrupted audit's debris is not an audit
    finish_work(work, {npo})
    assert ga.is_dir()
    finish_work(work, {npo, ga})
    assert not work.exists()
