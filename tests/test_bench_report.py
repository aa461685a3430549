"""bench/report.py writes each benchmark's section of RESULTS.md and leaves the rest."""

from pathlib import Path

from bench import report


def test_a_run_replaces_its_own_section_and_keeps_the_others(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\nintro\n\n<!-- drills -->\n# Fault drills\nkept\n")
    report.record("alpha", "Alpha", "first figures", results)
    report.record("beta", "Beta", "beta figures", results)
    report.record("alpha", "Alpha", "second figures", results)
    text = results.read_text()
    assert "second figures" in text and "first figures" not in text
    assert text.count("<!-- bench:alpha -->") == 1
    # New sections go before the drills, in the order first recorded; the rest is kept.
    assert text.index("bench:alpha") < text.index("bench:beta") < text.index("<!-- drills -->")
    assert text.startswith("# Benchmark results\n\nintro\n") and text.endswith("kept\n")


def test_a_section_names_its_machine_and_a_table_aligns_figures() -> None:
    section = report.section("x", "X", "body")
    assert "cores" in section and "GiB" in section and "temporalio" in section
    table = report.table(["name", "n"], [["a", 1]])
    assert table.splitlines()[1] == "|---|---:|"


def test_a_drill_section_goes_after_the_drills_with_the_command_that_repeats_it(
    tmp_path: Path,
) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n<!-- drills -->\n# Fault drills\nkept\n")
    report.record("hostile", "Hostile", "figures", results, repeat="make drills", drill=True)
    text = results.read_text()
    assert text.index("# Fault drills") < text.index("<!-- bench:hostile -->")
    assert "- Command: `make drills`" in text
