"""The ``roster`` commands: summaries on success, a problem table and exit code 1 on bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from warnd.cli.roster import roster

FIXTURES = Path(__file__).parent / "roster"


def test_generate_export_import_and_bad_input(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WARND_DATABASE_URL", db_url)
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()

    made = runner.invoke(roster, ["generate", "--counties", "370827", "--households", "200"])
    assert made.exit_code == 0, made.output
    assert "住户 households" in made.output and "200" in made.output

    again = runner.invoke(roster, ["generate", "--counties", "370827", "--households", "200"])
    assert again.exit_code == 1
    assert "--replace" in again.output and "Traceback" not in again.output

    out = tmp_path / "export"
    exported = runner.invoke(roster, ["export", "--out", str(out)])
    assert exported.exit_code == 0, exported.output
    assert (out / "households.csv").is_file()

    imported = runner.invoke(roster, ["import", *map(str, sorted(out.glob("*.csv")))])
    assert imported.exit_code == 0, imported.output
    assert "导入完成" in imported.output

    problems = tmp_path / "problems.csv"
    bad = sorted((FIXTURES / "bad").glob("*.csv"))
    failed = runner.invoke(roster, ["import", *map(str, bad), "--problems", str(problems)])
    assert failed.exit_code == 1
    assert "Traceback" not in failed.output
    assert "未导入任何数据" in failed.output and "1391234" in failed.output
    lines = problems.read_text(encoding="utf-8-sig").splitlines()
    assert lines[0] == "文件,行,列,问题" and len(lines) > 10

    unknown = runner.invoke(roster, ["generate", "--counties", "999999", "--replace"])
    assert unknown.exit_code == 1 and "999999" in unknown.output
