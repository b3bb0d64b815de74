"""The service's limits at their edges, without a server: upload slots and stream time
limits, the label and name bounds of an Evaluate request, and status messages cut to fit.
(tests/test_corpus_service.py drives the same limits through a real server.)"""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from gate._proto.gate.v1 import gate_pb2 as pb
from gate.errors import OverloadedError, RequestError
from gate.server.interceptors import fit_status_message
from gate.server.limits import (
    MAX_LABEL_KEY_CHARS,
    MAX_LABEL_VALUE_CHARS,
    MAX_LABELS,
    MAX_LABELS_BYTES,
    MAX_NAME_CHARS,
    check_evaluate_request,
)
from gate.server.uploads import UploadLimits, UploadSlots, UploadTimeoutError, timed_requests


def _limits(**changes: float) -> UploadLimits:
    values: dict[str, float] = {"concurrent": 1, "idle_timeout_s": 5, "total_timeout_s": 60, "min_bytes_per_s": 0}
    values.update(changes)
    return UploadLimits(
        concurrent=int(values["concurrent"]),
        idle_timeout_s=values["idle_timeout_s"],
        total_timeout_s=values["total_timeout_s"],
        min_bytes_per_s=int(values["min_bytes_per_s"]),
    )


def test_one_upload_more_than_the_slots_is_refused_at_once() -> None:
    slots = UploadSlots(_limits(concurrent=1))
    refused = pytest.raises(OverloadedError, match=r"receiving 1 uploads already \(max_concurrent_uploads\)")
    with slots.hold(), refused, slots.hold():
        pass
    with slots.hold():  # free again once the first ended
        pass


def _steady(interval_s: float) -> Iterator[pb.ModelChunk]:
    while True:
        time.sleep(interval_s)
        yield pb.ModelChunk(data=b"x" * 100)


def test_a_steady_stream_still_ends_at_the_total_limit() -> None:
    with pytest.raises(UploadTimeoutError, match=r"longer than the server's limit of 0.5 s \(upload_timeout_s\)"):
        for _ in timed_requests(_steady(0.05), _limits(total_timeout_s=0.5)):
            pass


def test_a_stream_that_ends_is_passed_through_whole() -> None:
    chunks = [pb.ModelChunk(total_size=3, data=b"a"), pb.ModelChunk(data=b"bc"), pb.ModelChunk(sha256="f" * 64)]
    assert list(timed_requests(iter(chunks), _limits())) == chunks


def test_an_error_of_the_stream_reaches_the_handler() -> None:
    def broken() -> Iterator[pb.ModelChunk]:
        yield pb.ModelChunk(data=b"a")
        raise ConnectionError("the client went away")

    received = []
    with pytest.raises(ConnectionError, match="the client went away"):
        for chunk in timed_requests(broken(), _limits()):
            received.append(chunk)
    assert len(received) == 1


def _request(**labels: str) -> pb.EvaluateRequest:
    return pb.EvaluateRequest(dataset="pets", policy_name="default", labels=pb.Labels(extra=labels))


def test_labels_at_their_limits_pass_and_one_more_is_refused() -> None:
    check_evaluate_request(_request(**{f"k{i}": "v" for i in range(MAX_LABELS)}))
    with pytest.raises(RequestError, match=f"labels.extra has {MAX_LABELS + 1} entries; the limit is {MAX_LABELS}"):
        check_evaluate_request(_request(**{f"k{i}": "v" for i in range(MAX_LABELS + 1)}))
    check_evaluate_request(_request(**{"k" * MAX_LABEL_KEY_CHARS: "v"}))
    with pytest.raises(RequestError, match=f"has {MAX_LABEL_KEY_CHARS + 1} characters"):
        check_evaluate_request(_request(**{"k" * (MAX_LABEL_KEY_CHARS + 1): "v"}))
    check_evaluate_request(_request(run="v" * MAX_LABEL_VALUE_CHARS))
    with pytest.raises(RequestError, match=f"label 'run' has a value of {MAX_LABEL_VALUE_CHARS + 1} characters"):
        check_evaluate_request(_request(run="v" * (MAX_LABEL_VALUE_CHARS + 1)))
    # each value within its limit, all of them together over the total (non-ASCII counts in UTF-8 bytes)
    many = {f"k{i}": "é" * (MAX_LABEL_VALUE_CHARS // 2) for i in range(MAX_LABELS_BYTES // MAX_LABEL_VALUE_CHARS + 1)}
    with pytest.raises(RequestError, match=f"bytes in all; the limit is {MAX_LABELS_BYTES}"):
        check_evaluate_request(_request(**many))


@pytest.mark.parametrize("field", ["dataset", "policy_name", "model_name", "model_sha256", "baseline_sha256"])
def test_names_are_bounded(field: str) -> None:
    request = _request()
    setattr(request, field, "n" * MAX_NAME_CHARS)
    check_evaluate_request(request)
    setattr(request, field, "n" * (MAX_NAME_CHARS + 1))
    with pytest.raises(RequestError, match=f"{field} has {MAX_NAME_CHARS + 1} characters; the limit is"):
        check_evaluate_request(request)


@pytest.mark.parametrize("message", ["a" * 5000, "é" * 5000, "%" * 5000, "no evaluation with id '" + "€" * 3000])
def test_status_messages_are_cut_to_fit_on_the_wire(message: str) -> None:
    cut = fit_status_message(message, limit=1024)
    assert len(quote(cut.encode("utf-8"), safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~")) <= 1024
    assert cut.endswith(f"(cut to fit a status message; {len(message)} characters in all)")
    assert message.startswith(cut.partition(" … (cut")[0])


def test_a_short_status_message_is_left_alone() -> None:
    assert fit_status_message("unknown dataset 'pets 2' (100 %)", limit=1024) == "unknown dataset 'pets 2' (100 %)"
