"""Exit statuses and messages of the `paxoskv` command line found by the CLI review, without
a cluster: a missing command is a usage error, paths that cannot work are refused before
anything runs, in one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shard.cli import build_parser, main
from shard.cli_kv import seeds_from
from shard.cluster import LocalCluster
from shard.config import ConfigError, parse_config

NOWHERE = "127.0.0.1:9"  # never contacted: every case fails before connecting


@pytest.mark.parametrize("argv", [[], ["cluster"]])
def test_a_missing_command_is_a_usage_error(argv: list[str], capsys: Any) -> None:
    """It printed the help and exited 0, so a script that lost its command went on."""
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("usage: paxoskv")
    assert err.endswith(f"{' '.join(['paxoskv', *argv])}: error: a command is required\n")


def test_bench_json_into_a_missing_directory_is_refused_before_running(
    tmp_path: Path, capsys: Any
) -> None:
    """It created the directory (`--json /nonexistent/x.json` made /nonexistent)."""
    path = tmp_path / "missing" / "x.json"
    assert main(["bench", "--cluster", NOWHERE, "--json", str(path)]) == 2
    assert f"the directory {path.parent} does not exist" in capsys.readouterr().err
    assert not path.parent.exists()


def test_an_empty_node_name_is_refused() -> None:
    """It was accepted: the node's data directory was data_dir itself."""
    raw = {"cluster_id": "c", "nodes": [{"id": 1, "name": "", "address": "127.0.0.1:7001"}]}
    with pytest.raises(ConfigError, match=r"nodes\[0\]\.name must not be empty"):
        parse_config(raw)


def test_get_help_says_where_a_missing_key_is_reported(capsys: Any) -> None:
    with pytest.raises(SystemExit):
        main(["get", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "A missing key prints nothing on stdout (a note on stderr) and exits with status" in text


@pytest.mark.parametrize("kind", ["file", "unwritable"])
def test_a_cluster_directory_that_cannot_be_one_is_one_line(
    kind: str, tmp_path: Path, capsys: Any
) -> None:
    """It printed raw errno text: `[Errno 20] Not a directory: '.../afile/pids/n1.pid'`."""
    if kind == "file":
        data_dir = tmp_path / "afile"
        data_dir.write_text("mine")
        expected = f"paxoskv: error: {data_dir} is not a directory; choose another --data-dir\n"
    else:
        data_dir = Path("/proc/paxoskv-ops-test")
        expected = f"paxoskv: error: cannot create the cluster directory {data_dir}: "
    assert main(["cluster", "start", "--data-dir", str(data_dir)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(expected) and err.count("\n") == 1 and "Errno" not in err


@pytest.mark.usefixtures("node_logging")
def test_a_node_whose_data_is_where_a_relative_data_dir_used_to_point_is_told_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A relative data_dir meant the working directory; it now means the config file's.
    A node whose data is at the old place was refused as one that lost its data, and told
    to --rebuild (found by review): it is now told where its data is and what to set."""
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "node.toml").write_text(
        'cluster_id = "c"\ndata_dir = "pkv-data"\n'
        '[[nodes]]\nid = 1\nname = "n1"\naddress = "127.0.0.1:1"\n'
    )
    work = tmp_path / "work"
    (work / "pkv-data" / "n1" / "db").mkdir(parents=True)  # where the data was kept before
    monkeypatch.chdir(work)
    assert main(["node", "--config", str(conf / "node.toml"), "--node-id", "n1"]) == 1
    err = capsys.readouterr().err
    assert f"data is in {work / 'pkv-data' / 'n1'}" in err and "full path" in err, err
    # One line for a person; the same error as a JSON record for a log shipper.
    assert len([line for line in err.splitlines() if not line.startswith("{")]) == 1


def test_the_cluster_option_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """PAXOSKV_CLUSTER is the default of --cluster, as the help says, not an override."""
    monkeypatch.setenv("PAXOSKV_CLUSTER", "127.0.0.1:2")
    assert seeds_from(build_parser().parse_args(["get", "k", "--cluster", NOWHERE])) == [NOWHERE]
    assert seeds_from(build_parser().parse_args(["get", "k"])) == ["127.0.0.1:2"]


def test_cluster_start_makes_the_shape_asked_and_prints_every_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    configs: list[Any] = []
    monkeypatch.setattr(LocalCluster, "start", lambda self, **_: configs.append(self.config))
    argv = ["cluster", "start", "--data-dir", str(tmp_path / "c"), "--nodes", "4"]
    assert main([*argv, "--shards", "5"]) == 0
    [config] = configs
    assert len(config.nodes) == 4 and len(config.split_points) == 4
    listed = capsys.readouterr().out.split("client addresses:\n")[1]
    for node in config.nodes:
        assert f"{node.name}  {node.address}" in listed


def test_cluster_start_fails_when_peers_refuse_a_node_it_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """Found by an operator trial: every peer refused n2 (its data put back from a copy)
    and `cluster start` still exited 0 with nothing said."""
    why = "n1, n3: node 2's data is older than when this node last saw it"
    monkeypatch.setattr(LocalCluster, "start", lambda self, **_: None)
    monkeypatch.setattr(LocalCluster, "refused", lambda self, settle_s=0.0: {"n2": why})
    assert main(["cluster", "start", "--data-dir", str(tmp_path / "c")]) == 1
    assert f"error: n2 runs but its peers refuse it ({why})" in capsys.readouterr().err


@pytest.mark.usefixtures("node_logging")
def test_a_node_that_cannot_start_says_why_in_a_json_line_too(tmp_path: Path, capsys: Any) -> None:
    """Found by an operator trial: the README tells a log shipper to keep the JSON lines,
    and the one plain line saying why a node did not start was lost."""
    code = main(["node", "--config", str(tmp_path / "missing.toml"), "--node-id", "n1"])
    assert code == 1
    lines = capsys.readouterr().err.splitlines()
    [record] = [json.loads(line) for line in lines if line.startswith("{")]
    assert record["level"] == "error" and record["msg"] == "node stopped on an error"
    assert "missing.toml" in record["error"]
    assert any(line.startswith("paxoskv: error: ") for line in lines)


def test_chaos_without_its_required_options_is_a_usage_error(tmp_path: Path, capsys: Any) -> None:
    """Found by a README walk-through: it exited 1, which the README keeps for failures."""
    assert main(["chaos"]) == 2
    assert "--workload and --out are required" in capsys.readouterr().err
    assert main(["chaos", "--recheck", str(tmp_path), "--workload", "bank"]) == 2
    assert "--recheck runs nothing: drop --workload" in capsys.readouterr().err


@pytest.mark.parametrize("before", [["--cluster", NOWHERE], [f"--cluster={NOWHERE}"]])
def test_a_commands_option_before_the_command_says_where_it_goes(
    before: list[str], capsys: Any
) -> None:
    """Found by a README walk-through: `paxoskv --cluster A get k` was refused as an invalid
    command named 'A'."""
    with pytest.raises(SystemExit) as info:
        main([*before, "get", "k"])
    assert info.value.code == 2
    assert "--cluster goes after the command" in capsys.readouterr().err
