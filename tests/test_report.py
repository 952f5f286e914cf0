"""The generated report: tables, paired differences, sections, banners, figures and runs.csv, built
from real record files on disk."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from benchmark.config import cpu
from benchmark.paper_grid import PAPER_ROWS
from benchmark.records.frame import records_frame
from benchmark.records.store import RecordWarning, write_record
from benchmark.cli import build_parser
from benchmark.report import build_report, paper
from benchmark.report.formatting import format_duration
from benchmark.report.sections import group_sections
from benchmark.report.statistics import budget_frontier, paired_differences, paired_mean_ci, table2_stats
from benchmark.report.tables import table2_compute_markdown
from test_records import make_record  # pytest puts tests/ on sys.path (rootdir-less test modules)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_runs(results: Path, records: list[dict]) -> None:
    for record in records:
        write_record(results / "runs" / f"{record['run_id']}.json", record)


def suite_records() -> list[dict]:
    """Every paper row at every Table 2 fraction with 2-3 seeds, plus a Table 3 mask-ratio sweep."""
    records = [
        make_record(method, arch, fraction, seed, epochs=5)
        for method, arch in PAPER_ROWS
        for fraction in paper.PAPER_FRACTIONS
        for seed in ((0, 1, 2) if method in ("rgmim", "mae") else (0, 1))
    ]
    records += [
        make_record(method, "vit", 1.0, seed, mask_ratio=ratio, epochs=5)
        for method in ("rgmim", "mae")
        for ratio in (0.15, 0.45, 0.9)
        for seed in (0, 1)
    ]
    return records


def section_text(readme: str, title: str) -> str:
    """The README text of the section whose heading is ``## title``."""
    start = readme.index(f"## {title}\n")
    end = readme.find("\n## ", start + 1)
    return readme[start:] if end == -1 else readme[start:end]


def table_row(markdown: str, first_cell: str) -> list[str]:
    line = next(line for line in markdown.splitlines() if line.startswith(f"| {first_cell} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


@pytest.fixture(scope="module")
def full_report(tmp_path_factory) -> tuple[Path, str]:
    results = tmp_path_factory.mktemp("results")
    write_runs(results, suite_records())
    readme = build_report(results)
    return results, readme.read_text(encoding="utf-8")


def test_readme_says_it_is_generated_and_by_which_command(full_report) -> None:
    _, readme = full_report
    head = "\n".join(readme.splitlines()[:5])
    assert "Generated" in head and "`python -m benchmark report`" in head


def test_every_referenced_png_exists_and_is_valid(full_report) -> None:
    results, readme = full_report
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", readme)
    assert len(links) == 4  # Fig. 4 style, all-method curves, vs fraction, vs mask ratio
    for link in links:
        path = results / link
        assert path.read_bytes().startswith(PNG_SIGNATURE), link
        height, width, _ = imread(path).shape
        assert height > 300 and width > 600, link
    assert sorted(p.name for p in (results / "plots").iterdir()) == sorted(Path(link).name for link in links)


def test_runs_csv_has_one_row_per_record_and_no_temporary_files_remain(full_report) -> None:
    results, _ = full_report
    frame = pd.read_csv(results / "runs.csv")
    assert len(frame) == len(suite_records())
    assert {"run_id", "row", "accuracy", "recall_COVID", "superseded"} <= set(frame.columns)
    assert not list(results.rglob("*.tmp"))


def test_full_report_has_every_table(full_report) -> None:
    _, readme = full_report
    for heading in ("Table 2", "Table 3", "RGMIM − MAE, paired by seed", "Per-class recall and AUROC", "Cost", "Protocol"):
        assert f"### {heading}" in readme
    rows = [
        line.split("|")[1].strip()
        for line in section_text(readme, "phantom · cpu profile").split("### Table 3")[0].splitlines()
        if line.startswith("| ") and not line.startswith("| ---")
    ]
    assert rows == [
        "Method",
        "RGMIM",
        "MAE",
        "SKD",
        "Cross",
        "BYOL",
        "SimSiam",
        "Transfer (ViT)",
        "Transfer (ResNet)",
        "Scratch (ViT)",
        "Scratch (ResNet)",
    ]
    assert "Image size 64 px" in readme and "vit_tiny_patch16_224" in readme  # from the cpu config
    assert f"Pretraining: {cpu().pretrain.epochs} epochs, batch 64" in readme
    assert "Device `cpu`" in readme  # the device the runs used (hardware.device), not the config's "auto"


def test_table2_cells_mean_std_n_bold_and_paper(tmp_path: Path) -> None:
    records = [make_record("rgmim", "vit", 0.05, seed, accuracy) for seed, accuracy in enumerate((0.80, 0.82, 0.84))]
    records += [make_record("mae", "vit", 0.05, seed, accuracy) for seed, accuracy in enumerate((0.70, 0.72))]
    records += [make_record("byol", "resnet", 0.01, 0, 0.60), make_record("byol", "resnet", 0.2, 0, 0.65)]
    # Another mask ratio must stay out of Table 2 even though it would be the best cell.
    records.append(make_record("mae", "vit", 0.05, 0, 0.99, mask_ratio=0.5))
    write_runs(tmp_path, records)
    readme = build_report(tmp_path).read_text(encoding="utf-8")
    table2 = readme.split("### Table 2")[1].split("### Table 3")[0]

    assert table_row(table2, "Method") == ["Method", "1 %", "5 %", "20 %"]
    assert table_row(table2, "RGMIM") == ["RGMIM", "—", "**0.820 ± 0.020** (n=3)<br>paper 0.893 · Δ −0.073", "—"]
    assert table_row(table2, "MAE")[2] == "0.710 ± 0.014 (n=2)<br>paper 0.875 · Δ −0.165"
    # One seed: no std; a fraction the paper did not run: no paper value.
    assert table_row(table2, "BYOL") == ["BYOL", "**0.600** (n=1)<br>paper 0.683 · Δ −0.083", "—", "**0.650** (n=1)"]


def test_table2_stats_numbers(tmp_path: Path) -> None:
    records = [make_record("skd", "resnet", 0.5, seed, accuracy) for seed, accuracy in enumerate((0.9, 0.8, 0.7))]
    stats = table2_stats(group_sections(records)[0].runs).iloc[0]
    assert (stats["mean"], stats["n"], stats["paper"]) == (pytest.approx(0.8), 3, 0.947)
    assert stats["std"] == pytest.approx(0.1)  # sample standard deviation, ddof = 1
    assert stats["delta"] == pytest.approx(0.8 - 0.947)


def test_table3_mask_ratios_at_full_labels(tmp_path: Path) -> None:
    records = [make_record("rgmim", "vit", 1.0, seed, accuracy) for seed, accuracy in enumerate((0.90, 0.92))]
    records += [make_record("rgmim", "vit", 1.0, seed, accuracy, mask_ratio=0.5) for seed, accuracy in enumerate((0.85, 0.87))]
    records += [make_record("mae", "vit", 1.0, 0, 0.88), make_record("mae", "vit", 0.5, 0, 0.99, mask_ratio=0.5)]
    write_runs(tmp_path, records)
    readme = build_report(tmp_path).read_text(encoding="utf-8")
    table3 = readme.split("### Table 3")[1].split("### RGMIM − MAE")[0]

    assert table_row(table3, "Mask ratio") == ["Mask ratio", "RGMIM", "MAE"]
    assert table_row(table3, "0.50") == ["0.50", "0.860 ± 0.014 (n=2)", "—"]  # the 50 % MAE run is not Table 3
    assert table_row(table3, "0.75") == [
        "0.75",
        "**0.910 ± 0.014** (n=2)<br>paper 0.962 · Δ −0.052",
        "**0.880** (n=1)<br>paper 0.956 · Δ −0.076",
    ]


def test_paired_ci_known_answers() -> None:
    # two seeds differing by 0.01: mean 0.015, standard error 0.005, t(0.975, 1 dof) = 12.706
    low, high = paired_mean_ci([0.02, 0.01])
    assert (low, high) == (pytest.approx(0.015 - 12.7062 * 0.005, abs=1e-5), pytest.approx(0.015 + 12.7062 * 0.005, abs=1e-5))
    assert paired_mean_ci([0.02, 0.02, 0.02]) == pytest.approx((0.02, 0.02))  # no spread, no width
    # more seeds with the same spread narrow the interval (t and the standard error both shrink)
    assert np.ptp(paired_mean_ci([0.01, 0.02] * 3)) < np.ptp(paired_mean_ci([0.01, 0.02]))


def test_paired_difference_pairs_by_seed(tmp_path: Path) -> None:
    records = [make_record("rgmim", "vit", 0.1, seed, accuracy) for seed, accuracy in zip((0, 1, 2), (0.80, 0.82, 0.84))]
    records += [make_record("mae", "vit", 0.1, seed, accuracy) for seed, accuracy in zip((0, 1, 3), (0.78, 0.81, 0.50))]
    records += [make_record("rgmim", "vit", 0.5, 0, 0.9), make_record("mae", "vit", 0.5, 0, 0.8)]
    differences = paired_differences(group_sections(records)[0].runs).set_index("fraction")

    ten = differences.loc[0.1]  # seeds 0 and 1 pair up: differences 0.02 and 0.01
    assert ten["pairs"] == 2
    assert ten["mean"] == pytest.approx(0.015)
    assert (ten["ci_low"], ten["ci_high"]) == pytest.approx(paired_mean_ci([0.02, 0.01]))
    assert ten["paper"] == pytest.approx(0.919 - 0.903)
    assert differences.loc[0.5, "pairs"] == 1 and pd.isna(differences.loc[0.5, "mean"])

    write_runs(tmp_path, records)
    readme = build_report(tmp_path).read_text(encoding="utf-8")
    paired = readme.split("### RGMIM − MAE, paired by seed")[1].split("###")[0]
    assert table_row(paired, "10 %") == ["10 %", "2", "+0.015", "[−0.049, +0.079]", "+0.016"]
    assert table_row(paired, "50 %") == ["50 %", "1", "n/a", "n/a", "+0.009"]


def test_table3_pairs_rgmim_and_mae_by_seed_at_each_mask_ratio(tmp_path: Path) -> None:
    rgmim = {0.3: (0.70, 0.72, 0.74), 0.75: (0.80, 0.81, 0.79)}
    mae = {0.3: (0.60, 0.63, 0.63), 0.75: (0.80, 0.81, 0.79)}
    records = [
        make_record(method, "vit", 1.0, seed, accuracy, mask_ratio=ratio)
        for method, by_ratio in (("rgmim", rgmim), ("mae", mae))
        for ratio, accuracies in by_ratio.items()
        for seed, accuracy in enumerate(accuracies)
    ]
    records.append(make_record("rgmim", "vit", 0.5, 0, 0.99, mask_ratio=0.3))  # not 100 %: not Table 3
    by_ratio = paired_differences(group_sections(records)[0].runs, setting="mask_ratio").set_index("mask_ratio")
    assert by_ratio.loc[0.3, "pairs"] == 3
    assert by_ratio.loc[0.3, "mean"] == pytest.approx(0.10)
    assert (by_ratio.loc[0.3, "ci_low"], by_ratio.loc[0.3, "ci_high"]) == pytest.approx(paired_mean_ci([0.10, 0.09, 0.11]))
    assert by_ratio.loc[0.3, "paper"] == pytest.approx(0.953 - 0.942)
    assert (by_ratio.loc[0.75, "mean"], by_ratio.loc[0.75, "ci_low"]) == pytest.approx((0.0, 0.0))

    write_runs(tmp_path, records)
    readme = build_report(tmp_path).read_text(encoding="utf-8")
    paired = readme.split("RGMIM − MAE by mask ratio, paired by seed")[1].split("###")[0]
    low, high = paired_mean_ci([0.10, 0.09, 0.11])
    assert table_row(paired, "0.30") == ["0.30", "3", "+0.100", f"[+{low:.3f}, +{high:.3f}]", "+0.011"]


def test_datasets_and_profiles_get_separate_sections_and_banners(tmp_path: Path) -> None:
    groups = {
        ("phantom", "fp-phantom-0001", "cpu"): 0.60,
        ("phantom", "fp-phantom-0001", "smoke"): 0.30,
        ("phantom", "fp-phantom-0002", "cpu"): 0.40,
        ("covid-radiography", "fp-real-0001", "paper"): 0.95,
    }
    records = [
        make_record("rgmim", "vit", 1.0, seed, accuracy, dataset=dataset, fingerprint=fingerprint, profile=profile)
        for (dataset, fingerprint, profile), accuracy in groups.items()
        for seed in (0, 1)
    ]
    write_runs(tmp_path, records)
    readme = build_report(tmp_path).read_text(encoding="utf-8")

    headings = re.findall(r"^## (.+)$", readme, flags=re.MULTILINE)
    assert headings[0] == "covid-radiography · paper profile"  # the comparable section comes first
    assert sorted(headings) == sorted(
        ["covid-radiography · paper profile", "phantom · cpu profile", "phantom · cpu profile", "phantom · smoke profile"]
    )
    for section in readme.split("\n## ")[1:]:
        fingerprint = re.search(r"fingerprint `([^`]+)`", section).group(1)
        (dataset, _, profile), accuracy = next(
            (key, value)
            for key, value in groups.items()
            if key[1] == fingerprint and section.startswith(f"{key[0]} · {key[2]} ")
        )
        # Each section holds only its own group's two seeds, never an average across groups.
        cell = table_row(section.split("### Table 3")[0], "RGMIM")[1]
        assert cell.startswith(f"**{accuracy:.3f} ± 0.000** (n=2)<br>paper 0.962 · Δ ")
        if dataset == "phantom":
            assert f"⚠ **synthetic phantom data, {profile} profile: not comparable to the paper's numbers.**" in section
        else:
            assert "⚠" not in section.split("###")[0] and "like-for-like" in section
    plots = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert len({name.rsplit("-fig4", 1)[0] for name in plots if "-fig4" in name}) == 4  # no file collisions


def test_real_dataset_on_cpu_profile_is_not_called_comparable(tmp_path: Path) -> None:
    write_runs(tmp_path, [make_record("mae", "vit", 1.0, 0, dataset="covid-radiography", profile="cpu")])
    readme = build_report(tmp_path).read_text(encoding="utf-8")
    assert "⚠ **cpu profile: not comparable to the paper's numbers.**" in readme


def test_a_dataset_with_another_label_space_gets_no_paper_values(tmp_path: Path) -> None:
    classes = ["COVID-19", "Non-COVID", "Normal"]
    records = [
        make_record(method, "vit", fraction, seed, dataset="covid-qu-ex", fingerprint="fp-qu-0001", classes=classes)
        for method in ("rgmim", "mae")
        for fraction in (0.1, 1.0)
        for seed in (0, 1)
    ]
    records += [
        make_record(method, "vit", 1.0, seed, mask_ratio=0.5, dataset="covid-qu-ex", fingerprint="fp-qu-0001", classes=classes)
        for method in ("rgmim", "mae")
        for seed in (0, 1)
    ]
    write_runs(tmp_path, records + [make_record("rgmim", "vit", 1.0, 0)])  # and a phantom run
    readme = build_report(tmp_path).read_text(encoding="utf-8")

    real = section_text(readme, "covid-qu-ex · cpu profile")
    assert "3 classes (`COVID-19`, `Non-COVID`, `Normal`), not the paper's 4" in real
    assert "paper 0." not in real and "Δ" not in real
    paired = real.split("### RGMIM − MAE, paired by seed")[1].split("###")[0]
    assert table_row(paired, "100 %")[-1] == "—"  # no paper difference either
    assert table_row(real.split("### Table 3")[1], "0.50")[1].endswith("(n=2)")  # Table 3 is there, bare
    phantom = section_text(readme, "phantom · cpu profile")
    assert "<br>paper 0.962 · Δ" in phantom  # the phantom models the paper's four classes

    def figure_width(section: str, suffix: str) -> int:
        name = re.search(rf"\(plots/([^)]+-{suffix}\.png)\)", section).group(1)
        return imread(tmp_path / "plots" / name).shape[1]

    # Ours alone on the real data; ours beside the paper's panel on the phantom.
    assert figure_width(real, "accuracy-vs-fraction") < 0.7 * figure_width(phantom, "accuracy-vs-fraction")
    assert "accuracy-vs-mask-ratio" in real


def test_every_row_is_paired_against_scratch_on_its_own_encoder(tmp_path: Path) -> None:
    gains = (0.10, 0.12, 0.14)  # RGMIM − Scratch (ViT) per seed, the same for fine-tuning and both probes
    records = [make_record("scratch", "vit", 0.1, seed, 0.40) for seed in range(3)]
    records += [make_record("rgmim", "vit", 0.1, seed, 0.40 + gain) for seed, gain in enumerate(gains)]
    records += [make_record("byol", "resnet", 0.1, seed, 0.6) for seed in range(2)]  # no Scratch (ResNet) here
    records += [make_record("mae", "vit", 0.1, 0, 0.39)]  # one pair only
    write_runs(tmp_path, records)
    readme = build_report(tmp_path).read_text(encoding="utf-8")

    table = readme.split("### Each row − Scratch on the same encoder, paired by seed")[1].split("###")[0]
    low, high = paired_mean_ci(np.array(gains))
    expected = f"**+0.120 [+{low:.3f}, +{high:.3f}]** (n=3)"
    assert [table_row(table, "RGMIM")[1:3]] == [["fine-tuned", expected]]
    rows = [line.split("|")[1:3] for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert [[cell.strip() for cell in row] for row in rows][1:] == [
        ["RGMIM", "fine-tuned"],
        ["RGMIM", "kNN"],
        ["RGMIM", "linear probe"],
        ["MAE", "fine-tuned"],
        ["MAE", "kNN"],
        ["MAE", "linear probe"],
    ]  # BYOL has no Scratch (ResNet) to pair with
    assert table_row(table, "MAE")[2] == "n/a (1)"
    assert low > 0 and table.count(expected) == 3  # every measure moved by the same gains


def test_bad_files_are_skipped_with_warnings_and_the_report_still_builds(tmp_path: Path) -> None:
    good = [make_record("rgmim", "vit", 0.05, seed) for seed in (0, 1)]
    write_runs(tmp_path, good)
    runs = tmp_path / "runs"
    (runs / "corrupt.json").write_bytes(b"\xff\xfe\x00garbage")
    (runs / "truncated.json").write_text(json.dumps(make_record("mae", "vit", 0.05, 0))[:500])
    invalid = make_record("mae", "vit", 0.05, 1)
    del invalid["metrics"]["accuracy"]
    (runs / "invalid.json").write_text(json.dumps(invalid))
    (tmp_path / "mask-quality").mkdir()
    (tmp_path / "mask-quality" / "cut.json").write_text('{"dataset": "phantom", "fingerprint"')
    (tmp_path / "mask-quality" / "partial.json").write_text('{"dataset": "phantom"}')
    with pytest.warns(RecordWarning) as caught:
        readme = build_report(tmp_path).read_text(encoding="utf-8")
    messages = [str(w.message) for w in caught]
    for name in (
        "runs/corrupt.json",
        "runs/truncated.json",
        "runs/invalid.json",
        "mask-quality/cut.json",
        "mask-quality/partial.json",
    ):
        assert any(name in message for message in messages), name
        assert f"`{name}`" in readme
    assert "missing key 'metrics.accuracy'" in readme
    assert "mask-quality file lacks fingerprint, image_size" in readme
    assert "### Lung-mask sources" not in readme
    assert re.fullmatch(
        r"\*\*0\.\d{3} ± 0\.\d{3}\*\* \(n=2\)<br>paper 0\.893 · Δ −0\.\d{3}",
        table_row(readme.split("### Table 2")[1], "RGMIM")[1],
    )
    assert len(pd.read_csv(tmp_path / "runs.csv")) == len(good)
    table2_rows = [line for line in readme.split("### Table 2")[1].split("### Table 3")[0].splitlines() if line.startswith("|")]
    assert not any("MAE" in line for line in table2_rows)


def test_rerun_of_a_condition_replaces_the_older_run(tmp_path: Path) -> None:
    old = make_record("mae", "vit", 0.05, 0, 0.50, finished_at="2026-11-28T09:00:00+00:00")
    new = make_record("mae", "vit", 0.05, 0, 0.70, finished_at="2026-11-28T12:00:00+00:00")
    old["run_id"] += "-old"
    write_runs(tmp_path, [old, new])
    readme = build_report(tmp_path).read_text(encoding="utf-8")
    assert table_row(readme.split("### Table 2")[1], "MAE")[1].startswith("**0.700** (n=1)")
    assert "1 older run(s)" in readme
    frame = pd.read_csv(tmp_path / "runs.csv").set_index("run_id")
    assert frame.loc[old["run_id"], "superseded"] and not frame.loc[new["run_id"], "superseded"]


def test_no_runs_still_writes_a_readme_and_the_cli_warns(tmp_path: Path, capsys) -> None:
    args = build_parser().parse_args(["report", "--results", str(tmp_path)])
    assert args.handler(args) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(tmp_path / "README.md")
    assert captured.err.startswith("warning: no valid run records")
    readme = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert "No runs were found" in readme and "python -m benchmark report" in readme


def test_stale_figures_of_vanished_sections_are_removed(tmp_path: Path) -> None:
    record = make_record("rgmim", "vit", 1.0, 0, profile="smoke")
    write_runs(tmp_path, [record])
    build_report(tmp_path)
    assert list((tmp_path / "plots").glob("phantom-smoke-*.png"))
    (tmp_path / "runs" / f"{record['run_id']}.json").unlink()
    with pytest.warns(RecordWarning, match="no valid run records"):
        build_report(tmp_path)
    assert not list((tmp_path / "plots").glob("*.png"))


def test_paper_rows_without_runs_are_named(tmp_path: Path) -> None:
    write_runs(tmp_path, [make_record("rgmim", "vit", 0.05, 0, 0.8), make_record("scratch", "resnet", 0.05, 0, 0.5)])
    readme = build_report(tmp_path).read_text(encoding="utf-8")
    line = next(line for line in readme.splitlines() if line.startswith("Paper rows without runs here"))
    assert "Transfer (ViT)" in line and "Cross" in line and "MAE" in line
    assert "RGMIM," not in line and "Scratch (ResNet)" not in line


def test_table2_compute_counts_each_pretraining_once_per_seed() -> None:
    # two fine-tunings of one cached RGMIM encoder, one scratch run, and a Table 3 run that does not count
    records = [make_record("rgmim", "vit", fraction, 0, reused=True) for fraction in (0.05, 1.0)]
    records += [make_record("scratch", "resnet", 1.0, 0), make_record("rgmim", "vit", 1.0, 0, mask_ratio=0.5)]
    records[-1]["pretrain"]["cache_key"] = "rgmim-vit-0-m0.5"
    runs = records_frame(records)
    # 120 s pretraining once + fine-tunings 60·f + 5 s: (8 + 65) for RGMIM and 65 for scratch
    assert table2_compute_markdown(runs) == (
        "- seed 0: 4.3 min (2 rows, 1 pretraining, 3 fine-tunings); whether other work shared the CPUs was not recorded"
    )


def test_table2_compute_says_when_other_work_shared_the_cpus() -> None:
    records = [make_record("rgmim", "vit", fraction, 0, reused=True) for fraction in (0.05, 1.0)]
    records.append(make_record("scratch", "resnet", 1.0, 0))
    for record, share in zip(records, (0.02, 0.04, 0.03)):
        record["pretrain"] = record["pretrain"] and {**record["pretrain"], "other_cpu_share": 0.01}
        record["finetune"]["other_cpu_share"] = share
    quiet = table2_compute_markdown(records_frame(records))
    assert quiet.endswith("; other work took at most 4 % of the CPUs")

    records[2]["finetune"]["other_cpu_share"] = 0.45  # a test suite ran beside this fine-tuning
    del records[0]["finetune"]["other_cpu_share"]  # written before the field existed
    busy = table2_compute_markdown(records_frame(records))
    assert busy.endswith(
        "; other work took more than 10 % of the CPUs during 1 of 3 timed parts (up to 45 %) (1 not recorded): "
        "this time reads high"
    )


def test_probe_tables_show_the_frozen_feature_accuracies_with_paired_cis(tmp_path: Path) -> None:
    records = suite_records()
    write_runs(tmp_path, records)
    readme = build_report(tmp_path).read_text(encoding="utf-8")
    for probe, title in (("knn", "weighted kNN"), ("linear", "linear probe")):
        table = readme.split(f"### Table 2 by {title} on frozen features")[1].split("###")[0]
        chosen = [
            r["probes"][probe]["accuracy"]
            for r in records
            if (r["method"], r["fraction"], r["mask_ratio"]) == ("rgmim", 1.0, 0.75)
        ]
        cell = table_row(table, "RGMIM")[-1]
        assert cell.replace("**", "").startswith(f"{sum(chosen) / len(chosen):.3f} ± ") and "paper" not in cell
        assert f"RGMIM − MAE by {title}, paired by seed" in table
        assert "| 100 % | 3 |" in table  # three seeds paired, each with its t interval


def test_runs_with_another_protocol_get_their_own_section_and_runs_that_do_not_read_it_stay(tmp_path: Path) -> None:
    usual = [
        make_record(m, a, f, seed) for m, a in (("rgmim", "vit"), ("scratch", "vit")) for f in (0.1, 1.0) for seed in (0, 1)
    ]
    longer = [
        make_record("rgmim", "vit", f, seed, 0.9, overrides=("pretrain.epochs=40",), pretrain_s=480.0)
        for f in (0.1, 1.0)
        for seed in (0, 1)
    ]
    byol_only = [make_record("byol", "resnet", 1.0, 0, overrides=("byol.ema_base=0.996",))]
    byol_usual = [make_record("byol", "resnet", 1.0, seed) for seed in (0, 1, 2)]
    sections = group_sections(usual + longer + byol_only + byol_usual)
    by_title = {section.title: section for section in sections}
    assert list(by_title) == [
        "phantom · cpu profile",
        "phantom · cpu profile · byol.ema_base=0.996",
        "phantom · cpu profile · pretrain.epochs=40",
    ]
    main, byol, longer_section = by_title.values()
    # Scratch reads no pretraining setting: its runs are the same runs for every pretraining length
    assert sorted(main.runs["row"].unique()) == ["BYOL", "RGMIM", "Scratch (ViT)"] and len(main.runs) == 11
    assert list(longer_section.runs["row"].unique()) == ["RGMIM"] and len(longer_section.runs) == 4
    assert len(byol.runs) == 1 and main.superseded == longer_section.superseded == 0
    assert len({section.slug for section in sections}) == 3
    write_runs(tmp_path, usual + longer + byol_only + byol_usual)
    readme = build_report(tmp_path).read_text(encoding="utf-8")
    assert "## phantom · cpu profile · pretrain.epochs=40" in readme
    assert "⚠ Config values that differ between runs" not in readme  # each table holds one protocol
    # the budget frontier: each row's cells under every variant, against what one seed of the cell cost
    frontier = budget_frontier([main, byol, longer_section]).set_index(["row", "fraction", "budget"])
    rgmim_usual, rgmim_longer = frontier.loc[("RGMIM", 1.0, "usual")], frontier.loc[("RGMIM", 1.0, "pretrain.epochs=40")]
    finetune_minutes = main.runs.query("row == 'RGMIM' and fraction == 1.0")["finetune_wall_time_s"].mean() / 60
    assert rgmim_usual["minutes"] == pytest.approx(2.0 + finetune_minutes)
    assert rgmim_longer["minutes"] == pytest.approx(8.0 + finetune_minutes) and rgmim_longer["accuracy"] == 0.9
    assert ("Scratch (ViT)", 0.1, "usual") in frontier.index
    assert "## Budget frontier · phantom · cpu profile" in readme
    figure = re.search(r"\(plots/([^)]+budget-frontier\.png)\)", readme)
    assert figure is not None and imread(tmp_path / "plots" / figure.group(1)).shape[2] == 4
    # the figure's points as a table, cheaper budget first
    frontier_table = section_text(readme, "Budget frontier · phantom · cpu profile")
    rgmim_rows = [line for line in frontier_table.splitlines() if line.startswith("| RGMIM | 100 % |")]
    assert [row.split(" | ")[2] for row in rgmim_rows] == ["usual", "pretrain.epochs=40"]
    assert rgmim_rows[1].split(" | ")[3:6] == ["2", format_duration(8.0 * 60 + finetune_minutes * 60), "0.900"]


def test_the_budget_frontier_compares_budgets_on_the_seeds_both_ran() -> None:
    # three seeds of the usual budget, one of the longer one: a lucky seed 2 must not flatter the usual budget
    usual = [make_record("rgmim", "vit", 1.0, seed, accuracy) for seed, accuracy in ((0, 0.6), (1, 0.7), (2, 0.95))]
    usual += [make_record("scratch", "vit", 1.0, seed, 0.3 + 0.1 * seed) for seed in (0, 1, 2)]
    longer = [make_record("rgmim", "vit", 1.0, 0, 0.65, overrides=("pretrain.epochs=40",), pretrain_s=480.0)]
    longer[0]["hardware"]["cpu"] = "AMD EPYC (family 25, model 1), AVX2"
    frontier = budget_frontier(group_sections(usual + longer)).set_index(["row", "budget"])
    # minutes are only comparable on one machine, so each point names the one it ran on
    assert frontier.loc[("RGMIM", "pretrain.epochs=40"), "hardware"].startswith("AMD EPYC (family 25, model 1), AVX2 × ")
    assert frontier.loc[("RGMIM", "usual"), "hardware"].startswith("CPU not recorded × ")
    assert frontier.loc[("RGMIM", "usual"), "accuracy"] == pytest.approx(0.6)
    assert frontier.loc[("RGMIM", "usual"), "seeds"] == frontier.loc[("RGMIM", "pretrain.epochs=40"), "seeds"] == 1
    # a row with one budget keeps every seed it has
    assert frontier.loc[("Scratch (ViT)", "usual"), "seeds"] == 3
    assert frontier.loc[("Scratch (ViT)", "usual"), "accuracy"] == pytest.approx(0.4)


def test_the_cost_table_counts_each_encoder_once_when_every_run_reused_it() -> None:
    from benchmark.report.tables import cost_markdown

    # a sweep pretrains in a job of its own: every fine-tuning record says its encoder was reused
    records = [make_record("rgmim", "vit", f, seed, reused=True, pretrain_s=300.0) for f in (0.1, 1.0) for seed in (0, 1)]
    row = table_row(cost_markdown(group_sections(records)[0].runs), "RGMIM")
    assert row[1:4] == ["4", "2", "5.0 min"]  # runs, encoders, pretraining time per encoder
    finetune_s = sum(record["finetune"]["wall_time_s"] for record in records)
    assert row[7] == format_duration(2 * 300.0 + finetune_s)


def test_the_cost_table_names_the_cpu_model_where_the_records_have_it() -> None:
    from benchmark.report.tables import cost_markdown

    named = make_record("rgmim", "vit", 1.0, 0)
    named["hardware"]["cpu"] = "AMD EPYC (family 25, model 1), AVX2"
    unnamed = make_record("rgmim", "vit", 0.1, 0)  # written before records named the CPU
    hardware = table_row(cost_markdown(group_sections([named, unnamed])[0].runs), "RGMIM")[-1]
    assert hardware.split("; ") == [
        "AMD EPYC (family 25, model 1), AVX2 × 2 · torch 2.4.1",
        "CPU not recorded × 2 · torch 2.4.1",
    ]


def test_the_committed_results_readme_and_csv_are_what_report_makes_of_the_committed_records(tmp_path: Path) -> None:
    committed = Path(__file__).resolve().parents[1] / "results"
    build_report(committed, out_dir=tmp_path)
    for name in ("README.md", "runs.csv"):  # figures are PNG bytes that vary with the matplotlib build
        assert (tmp_path / name).read_text(encoding="utf-8") == (committed / name).read_text(encoding="utf-8"), name
