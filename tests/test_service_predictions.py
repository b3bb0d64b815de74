"""`gate check --predictions-out`: a finished evaluation's predictions table, streamed by
the server in chunks and written whole by the client, is the file `gate eval
--predictions-out` writes on the same inputs. A real server, the real CLI, no mocks."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from gate._proto.gate.v1 import gate_pb2 as pb
from gate._proto.gate.v1 import gate_pb2_grpc as pb_grpc
from gate.cli import main
from gate.client import GateClientError
from gate.errors import RequestError
from tests.conftest import ROOT, Served
from tests.models import lookup_model

CHUNK_LIMIT = 1 << 20


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_gate_check_predictions_equal_gate_eval_predictions(
    serve: Callable[..., Served], tmp_path: Path, capsys: pytest.CaptureFixture[str], suffix: str
) -> None:
    s = serve()
    out = tmp_path / "out"
    out.mkdir()
    model = out / "m.onnx"
    model.write_bytes(lookup_model(3))
    checked, evaluated = out / f"check{suffix}", out / f"eval{suffix}"
    common = ["--model", str(model), "--policy", "default", "--provider", "cpu", "--format", "json"]
    code = main(["check", "--server", s.address, "--dataset", "pets-huge", *common, "--predictions-out", str(checked)])
    verdict = json.loads(capsys.readouterr().out)
    assert code == 0 and verdict["verdict"] == "PASS"
    spec = s.root / "datasets" / "pets-huge.yaml"
    common[common.index("default")] = str(ROOT / "policies" / "default.yaml")
    code = main(["eval", "--dataset", str(spec), *common, "--predictions-out", str(evaluated)])
    assert code == 0 and json.loads(capsys.readouterr().out)["verdict"] == "PASS"
    assert checked.read_bytes() == evaluated.read_bytes()
    size = checked.stat().st_size
    assert size > CHUNK_LIMIT or suffix == ".parquet"  # 30,000 rows of text cross the wire in several chunks
    names = sorted([checked.name, evaluated.name, model.name])
    assert sorted(p.name for p in out.iterdir()) == names  # no temporary file left behind

    channel = grpc.insecure_channel(s.address)
    chunks = list(
        pb_grpc.GateServiceStub(channel).GetPredictions(
            pb.GetPredictionsRequest(evaluation_id=verdict["evaluation_id"], format=suffix[1:])
        )
    )
    channel.close()
    assert len(chunks) == -(-size // CHUNK_LIMIT) + 1 and all(len(c.data) <= CHUNK_LIMIT for c in chunks)
    assert chunks[0].total_size == size and len(chunks[-1].sha256) == 64 and not chunks[-1].data


def test_predictions_only_of_a_judged_evaluation(serve: Callable[..., Served], tmp_path: Path) -> None:
    s = serve()
    out = tmp_path / "p.csv"
    with s.client() as c:
        wrong = c.evaluate(c.upload_model(lookup_model(4)).sha256, "pets", policy_name="default")
        assert wrong.document["verdict"] == "ERROR"
        for evaluation_id, expected in (
            (wrong.evaluation_id, f"NOT_FOUND: evaluation {wrong.evaluation_id} has no predictions: it ended ERROR"),
            ("nope", "NOT_FOUND: no evaluation with id 'nope'"),
        ):
            with pytest.raises(GateClientError) as refused:
                c.save_predictions(evaluation_id, out)
            assert refused.value.message == expected
        with pytest.raises(RequestError) as bad_name:
            c.save_predictions(wrong.evaluation_id, tmp_path / "p.txt")
    assert "unknown format '.txt'" in bad_name.value.message
    assert not out.exists()


def test_a_predictions_file_gate_cannot_write_is_refused_before_the_upload(
    serve: Callable[..., Served], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = serve()
    model = tmp_path / "m.onnx"
    model.write_bytes(lookup_model(3))
    argv = ["check", "--server", s.address, "--dataset", "pets", "--model", str(model), "--policy", "default"]
    code = main([*argv, "--format", "json", "--predictions-out", str(tmp_path / "p.txt")])
    verdict = json.loads(capsys.readouterr().out)
    assert code == 2 and verdict["error"]["type"] == "RequestError"
    assert "unknown format '.txt'" in verdict["error"]["message"]
    with s.client() as c:  # nothing reached the server: no model stored, no evaluation recorded
        assert c.list_verdicts() == []
    assert not any((s.root / "data" / "models").glob("*.onnx"))
