"""`paxoskv chaos` options: --out DIR must be new or empty, as its --help says (a directory
holding other files, a local cluster's say, is refused before anything starts), and --help
names the defaults a bare `--workload W --out DIR` runs with."""

from __future__ import annotations

from pathlib import Path

import pytest

from shard.chaos import runner
from shard.chaos.runner import ChaosError, ChaosOptions
from shard.cli import build_parser


class _Started(Exception):
    """The run went past its option checks."""


@pytest.fixture
def no_start(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(options: ChaosOptions) -> None:
        raise _Started

    monkeypatch.setattr(runner, "_choose_network", refuse)


def _options(out: Path) -> ChaosOptions:
    return ChaosOptions(workload="bank", nemesis="none", duration_s=1.0, out=out)


def test_a_non_empty_out_directory_is_refused(tmp_path: Path, no_start: None) -> None:
    (tmp_path / "cluster.toml").write_text("cluster_id = 'mine'\n")
    with pytest.raises(ChaosError, match="is not empty"):
        runner.run(_options(tmp_path), say=lambda line: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cluster.toml"]


def test_a_file_as_out_is_refused(tmp_path: Path, no_start: None) -> None:
    path = tmp_path / "a-file"
    path.write_text("x")
    with pytest.raises(ChaosError, match="not a directory"):
        runner.run(_options(path), say=lambda line: None)


@pytest.mark.parametrize("make", [False, True])
def test_a_new_or_empty_out_directory_is_taken(tmp_path: Path, no_start: None, make: bool) -> None:
    out = tmp_path / "run"
    if make:
        out.mkdir()
    with pytest.raises(_Started):
        runner.run(_options(out), say=lambda line: None)


def test_help_names_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["chaos", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for default in (
        "(default mix: all)",
        "seconds of workload (default 30)",
        "(default 5)",
        "(default: random)",
        "(s, default 3)",
        "between faults (default 1 3)",
        "fault lasts (default 1 4)",
    ):
        assert default in text, default
