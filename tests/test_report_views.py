"""The people's views of apply reports: a self-contained HTML page and a CSV of the steps."""

from __future__ import annotations

import copy
import csv
import io
import json
import re
import stat
from pathlib import Path

import pytest

from importer import report_views
from importer.cli import main

NAME = '<img src=x onerror=alert("x")> O\'Brien & Co'
EXTERNAL = [
    re.compile(r"""(?:src|href|action|xlink:href)\s*=\s*["']?\s*(?:https?:)?//""", re.I),
    re.compile(r"@import", re.I),
    re.compile(r"""url\(\s*["']?\s*(?!#|data:)""", re.I),
    re.compile(r"<(?:script|link|iframe|object|embed|img)\b", re.I),
]


def step(target: str, action: str, status: str = "applied", error: str | None = None, size: int = 0,
         started: str | None = None, finished: str | None = None) -> dict:
    return {"id": f"{action}:{target}", "action": action, "target": target, "status": status, "error": error,
            "bytes": size, "seconds": 0.5, "started": started, "finished": finished}


def version_2() -> dict:
    """A version 2 report with one of every problem, times on the uploads, and a name needing escapes."""
    steps = [
        step("/Subject01", "create_subject"),
        step("/Subject01/2025-03-14", "create_session"),
        step("/Subject01/2025-03-14/Barefoot/Walk01", "create_trial"),
        step("/Subject01/2025-03-14/Barefoot/Walk01/Walk01.c3d", "upload_file", size=4_000_000,
             started="2026-11-23T19:30:01+00:00", finished="2026-11-23T19:30:05+00:00"),
        step("/Subject01/2025-03-14/Barefoot/Walk01/Walk01.mp4", "upload_file", size=6_000_000,
             started="2026-11-23T19:30:02+00:00", finished="2026-11-23T19:31:00+00:00"),
        step(f"/{NAME}", "create_subject"),
        step(f"/{NAME}/2025-05-20", "create_session", status="failed", error="server said 500: <b>boom</b>"),
        step(f"/{NAME}/2025-05-20/Shod/Run02", "create_trial", status="skipped", error="parent failed"),
        step(f"/{NAME}/2025-05-20/Shod/Run02/Run02.c3d", "upload_file", status="not_attempted"),
    ]
    return {
        "format": "moveshelf-import/report", "version": 2, "project": "org/lab", "roots": ["/data/lab"],
        "outcome": "partial", "started": "2026-11-23T19:30:00+00:00", "finished": "2026-11-23T19:32:00+00:00",
        "summary": {"steps": len(steps), "applied": 6, "skipped": 1, "failed": 1, "not_attempted": 1,
                    "bytes": 10_000_000, "seconds": 120.0},
        "steps": steps,
        "conflicts": [{"target": "/Subject01/2025-03-14/Barefoot/Walk01/Walk01.GCD",
                       "reason": "different content on the server", "server_size": 12}],
        "unmapped": [{"path": "Subject01/2025-03-14/notes.txt", "reason": "no trial of that name"}],
        "deferred": [{"path": "Subject03/2025-11-23", "reason": "files still changing"}],
        "set_aside": [{"path": "Subject04/2025-01-02", "problems": ["invalid session_date '2025-13-01'"]}],
        "shards": ["1/2"],
    }


def assert_self_contained(page: str) -> None:
    for pattern in EXTERNAL:
        assert not pattern.search(page), pattern.pattern


@pytest.fixture
def applied(cli, lab: Path, tmp_path: Path) -> Path:
    """The report of a real apply of the sample lab against the emulator (version 1 fields today)."""
    path = tmp_path / "r.json"
    assert cli("apply", str(lab), "--yes", "--report", str(path)).code == 0
    return path


def test_page_of_a_real_apply_names_every_subject_and_session(applied: Path, lab: Path, tmp_path: Path) -> None:
    out = tmp_path / "migration.html"
    assert main(["report", "html", str(applied), "--out", str(out)]) == 0
    page = out.read_text()
    subjects = sorted(p.name for p in lab.iterdir() if p.is_dir())
    sessions = [s.name for p in lab.iterdir() if p.is_dir() for s in p.iterdir() if s.is_dir()]
    assert subjects and sessions
    for name in subjects + sessions:
        assert f">{name}<" in page or f"Session {name}" in page, name
    document = json.loads(applied.read_text())
    totals = report_views.totals(report_views.combine([document]), report_views.subjects(document["steps"]))
    assert (totals["subjects"], totals["sessions"]) == (len(subjects), len(sessions))
    assert document["summary"]["failed"] == 0 and "Failed steps" not in page
    unmapped = document.get("unmapped", 0)  # version 1 counts them, version 2 lists them
    assert f"Unmapped files, not uploaded ({len(unmapped) if isinstance(unmapped, list) else unmapped})" in page
    assert all(step["finished"] for step in document["steps"])  # the report has per-step times: the chart is drawn
    assert "no per-step times" not in page and "<polyline" in page
    assert_self_contained(page)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_csv_of_a_real_apply_has_a_row_per_step(applied: Path, tmp_path: Path) -> None:
    out = tmp_path / "steps.csv"
    assert main(["report", "csv", str(applied), "--out", str(out)]) == 0
    rows = list(csv.reader(out.open(newline="")))
    steps = json.loads(applied.read_text())["steps"]
    assert rows[0][:6] == ["target", "action", "status", "error", "bytes", "seconds"]
    assert len(rows) == len(steps) + 1
    assert [r[0] for r in rows[1:]] == [s["target"] for s in steps]
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_page_shows_every_problem_first_and_escapes_names() -> None:
    page = report_views.html([version_2()])
    problems, subjects = page.index('id="problems"'), page.index('id="subjects"')
    for text in ("server said 500: &lt;b&gt;boom&lt;/b&gt;", "Subject04/2025-01-02", "invalid session_date",
                 "different content on the server", "Walk01.GCD", "Subject03/2025-11-23", "files still changing",
                 "Subject01/2025-03-14/notes.txt"):
        assert problems < page.index(text) < subjects, text
    assert "&lt;img src=x onerror=alert(&#34;x&#34;)&gt; O&#39;Brien &amp; Co" in page
    assert "<img" not in page and "<b>boom" not in page
    assert page.index(">Subject01<") > subjects
    assert [s.name for s in report_views.subjects(version_2()["steps"])] == [NAME, "Subject01"]
    assert_self_contained(page)


def test_chart_draws_cumulative_bytes_from_upload_times() -> None:
    chart = report_views.chart(version_2()["steps"])
    assert chart["drawn"] and chart["uploads"] == 2 and chart["untimed"] == 0
    points = [tuple(map(float, p.split(","))) for p in chart["points"].split()]
    ys = [y for _, y in points]
    assert ys == sorted(ys, reverse=True)  # bytes only grow (SVG y grows downwards)
    assert ys[-1] == chart["margin"] and max(x for x, _ in points) == chart["right"]
    assert "<polyline" in report_views.html([version_2()])


def test_chart_counts_uploads_without_times() -> None:
    document = version_2()
    document["steps"][4]["finished"] = None
    chart = report_views.chart(document["steps"])
    assert chart["drawn"] and (chart["uploads"], chart["untimed"]) == (1, 1)
    assert "1 uploads have no recorded time" in report_views.html([document])


def test_shards_combine_old_and_new_reports() -> None:
    old = {"format": "moveshelf-import/report", "version": 1, "project": "org/lab", "started": 1795030000.0,
           "finished": 1795030100.5, "interrupted": True, "unmapped": 3, "conflicts": [],
           "summary": {"steps": 1, "applied": 1, "skipped": 0, "failed": 0, "not_attempted": 0, "bytes": 10,
                       "seconds": 100.5},
           "steps": [{"id": "a", "action": "create_subject", "target": "/Subject09", "status": "applied",
                      "error": None, "bytes": 0, "seconds": 0.1}], "shards": ["2/2"]}
    combined = report_views.combine([version_2(), old])
    assert combined["outcome"] == "interrupted" and combined["unmapped_count"] == 4
    assert combined["shards"] == ["1/2", "2/2"]
    page = report_views.html([version_2(), old])
    assert ">Subject09<" in page and "2 reports combined" in page
    lines = report_views.csv_text([version_2(), old]).splitlines()
    assert len(lines) == 1 + len(version_2()["steps"]) + 1


def test_reports_of_different_projects_are_refused() -> None:
    other = version_2()
    other["project"] = "org/other"
    with pytest.raises(report_views.InputError, match="different projects"):
        report_views.combine([version_2(), other])


def test_csv_keeps_formulas_as_text() -> None:
    document = copy.deepcopy(version_2())
    document["steps"][6]["error"] = "=HYPERLINK(\"x\")"
    rows = list(csv.reader(io.StringIO(report_views.csv_text([document]))))
    assert rows[7][3] == "'=HYPERLINK(\"x\")"
    assert rows[7][2] == "failed" and rows[4][4] == "4000000"


def test_cli_renders_several_reports_into_private_files(tmp_path: Path, capsys) -> None:
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps(version_2()))
    shard = version_2()
    shard["steps"] = [step("/Subject77", "create_subject")]
    second.write_text(json.dumps(shard))
    out = tmp_path / "migration.html"
    out.write_text("old")
    out.chmod(0o644)  # an older, readable page is replaced by a private one
    assert main(["report", "html", str(first), str(second), "--out", str(out)]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and ">Subject77<" in out.read_text()
    assert "wrote" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left behind


@pytest.mark.parametrize("content", ["not json", json.dumps({"format": "something/else", "steps": []}),
                                     json.dumps({"format": "moveshelf-import/report", "steps": 3})])
def test_cli_refuses_what_is_not_a_report(tmp_path: Path, capsys, content: str) -> None:
    source, out = tmp_path / "r.json", tmp_path / "steps.csv"
    source.write_text(content)
    assert main(["report", "csv", str(source), "--out", str(out)]) == 2
    assert "r.json" in capsys.readouterr().err and not out.exists()


def test_cli_needs_an_out_file_and_an_existing_report(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "html", str(tmp_path / "r.json")])
    assert exit_info.value.code == 2
    assert main(["report", "html", str(tmp_path / "missing.json"), "--out", str(tmp_path / "p.html")]) == 2
    assert "missing.json: $: does not exist" in capsys.readouterr().err


def test_a_clean_run_says_there_are_no_problems() -> None:
    document = version_2()
    document["steps"] = [s for s in document["steps"] if s["target"].startswith("/Subject01")]
    for key in ("conflicts", "unmapped", "deferred", "set_aside"):
        document[key] = []
    page = report_views.html([document])
    assert "No problems" in page and "needs attention" not in page


def test_entries_missing_fields_still_render() -> None:
    document = version_2()
    document["set_aside"] = [{"path": "Subject05/x", "problems": "one problem as text"}, {}]
    document["deferred"] = [{"reason": "no path given"}]
    document["conflicts"] = [{}]
    page = report_views.html([document])
    assert "one problem as text" in page and "no path given" in page
    assert "Sessions set aside (2)" in page and "Conflicts, left alone (1)" in page
