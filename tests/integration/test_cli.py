"""`chainlake ingest`: bad input ends with one clear line before Spark starts; a run works."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from ingestion.cli import main
from ingestion.sink import BronzeLake

SECRET_URL = "http://user:hunter2@127.0.0.1:1/v3/0123456789abcdef0123456789abcdef?apikey=TOPSECRET"


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_end_before_start_is_refused(capsys, tmp_path):
    code, _, err = run_cli(capsys, "ingest", "--rpc-url", "http://127.0.0.1:1", "--lake",
                           str(tmp_path), "--start-block", "10", "--end-block", "5")
    assert code == 2
    assert "end-block (5) must be greater than start-block (10)" in err
    assert len(err.strip().splitlines()) == 1


def test_negative_block_is_refused(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["ingest", "--lake", str(tmp_path), "--start-block", "-3"])
    assert exit_info.value.code == 2
    assert "must be >= 0" in capsys.readouterr().err


def test_unreachable_node_is_named_without_its_secrets(capsys, tmp_path):
    code, out, err = run_cli(capsys, "ingest", "--rpc-url", SECRET_URL, "--lake", str(tmp_path),
                             "--start-block", "0", "--end-block", "5")
    assert code == 2
    assert "127.0.0.1:1" in err
    for secret in ("hunter2", "0123456789abcdef0123456789abcdef", "TOPSECRET"):
        assert secret not in err + out


def test_wrong_chain_id_is_refused_before_spark(capsys, devnet, tmp_path):
    code, _, err = run_cli(capsys, "ingest", "--rpc-url", devnet.url, "--lake", str(tmp_path),
                           "--start-block", "0", "--end-block", "5", "--chain-id", "1")
    assert code == 2
    assert "chain id 31337, expected 1" in err


def test_start_beyond_the_head_is_refused(capsys, devnet, tmp_path):
    code, _, err = run_cli(capsys, "ingest", "--rpc-url", devnet.url, "--lake", str(tmp_path),
                           "--start-block", str(devnet.head + 100))
    assert code == 2
    assert "beyond the safe head" in err


def test_ingest_command_fills_the_bronze_tables(capsys, spark, devnet, tmp_path):
    end = min(devnet.head + 1, 30)
    code, out, _ = run_cli(capsys, "ingest", "--rpc-url", devnet.url, "--lake",
                           str(tmp_path / "lake"), "--start-block", "0", "--end-block", str(end),
                           "--max-blocks-per-trigger", "10", "--chain-id", "31337")
    assert code == 0, out
    assert "blocks/s" in out and "done" in out
    blocks = BronzeLake(str(tmp_path / "lake")).read("blocks")
    assert sorted(blocks.column("block_number").to_pylist()) == list(range(end))


def test_follow_takes_no_end_block(capsys, tmp_path):
    code, _, err = run_cli(capsys, "ingest", "--rpc-url", "http://127.0.0.1:1", "--lake",
                           str(tmp_path), "--start-block", "0", "--end-block", "5",
                           "--follow", "10")
    assert code == 2
    assert "--follow follows the head: it takes no --end-block" in err


def test_ingest_follows_the_head_when_asked(capsys, spark, devnet, tmp_path):
    lake = BronzeLake(str(tmp_path / "lake"))
    head = devnet.live_head()

    def mine_after_the_first_pass() -> None:
        deadline = time.monotonic() + 120
        while (lake.stored_tip() or -1) < head:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        devnet.call("anvil_mine", ["0x3"])

    miner = ThreadPoolExecutor(1).submit(mine_after_the_first_pass)
    # The following query must start and run a trigger within the time left after the blocks
    # are mined (a block safe after its time waits for the next run): ample on a loaded machine.
    code, out, _ = run_cli(capsys, "ingest", "--rpc-url", devnet.url, "--lake", lake.root,
                           "--start-block", str(head - 4), "--follow", "30")
    miner.result(timeout=60)
    assert code == 0, out
    assert "following the head for 30 s" in out
    blocks = lake.read("blocks").column("block_number").to_pylist()
    assert sorted(blocks) == list(range(head - 4, head + 4))  # and the 3 mined meanwhile, once
