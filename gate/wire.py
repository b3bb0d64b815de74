"""Conversions between gate's domain values and the gate.v1 messages, for both ends of
the wire: the client (labels, providers) and the server (verdicts, audit records).

The servicer holds no logic: it converts with these functions and delegates. The client
imports them from here, never from :mod:`gate.server`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from google.protobuf import struct_pb2

from gate._proto.gate.v1 import gate_pb2 as pb
from gate.providers import Provider
from gate.report import render_json
from gate.verdict import Verdict

PROVIDERS: dict[int, Provider] = {pb.PROVIDER_AUTO: "auto", pb.PROVIDER_CUDA: "cuda", pb.PROVIDER_CPU: "cpu"}
DECISIONS = {"PASS": pb.PASS, "FAIL": pb.FAIL, "ERROR": pb.ERROR}
DECISION_NAMES = {v: k for k, v in DECISIONS.items()}


def labels_to_dict(labels: pb.Labels) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if labels.pipeline_id:
        out["pipeline_id"] = labels.pipeline_id
    if labels.git_sha:
        out["git_sha"] = labels.git_sha
    if labels.extra:
        out["extra"] = dict(sorted(labels.extra.items()))
    return out


def labels_to_pb(labels: Mapping[str, Any]) -> pb.Labels:
    return pb.Labels(
        pipeline_id=str(labels.get("pipeline_id") or ""),
        git_sha=str(labels.get("git_sha") or ""),
        extra={str(k): str(v) for k, v in (labels.get("extra") or {}).items()},
    )


def _set_optional(msg: Any, field: str, value: Any) -> None:
    if value is not None:
        setattr(msg, field, value)


def _metrics_to_pb(m: Mapping[str, Any]) -> pb.Metrics:
    out = pb.Metrics(samples=int(m.get("samples") or 0))
    for key, value in m.items():
        # scalars only: sections such as metrics["latency"] travel in the verdict JSON
        if key not in ("samples", "per_class", "confusion_matrix", "calibration") and isinstance(value, int | float):
            out.values[key] = float(value)
    for name, pc in m.get("per_class", {}).items():
        cm = pb.ClassMetrics(name=name, support=pc["support"], predicted=pc["predicted"], tp=pc["tp"])
        for field in ("precision", "recall", "f1"):
            _set_optional(cm, field, pc[field])
        out.per_class.append(cm)
    for row in m.get("confusion_matrix", []):
        out.confusion_matrix.append(pb.ConfusionRow(counts=row))
    return out


def _rule_to_pb(r: Mapping[str, Any]) -> pb.RuleResult:
    threshold = struct_pb2.Struct()
    threshold.update(json.loads(json.dumps(r.get("threshold") or {})))
    msg = pb.RuleResult(
        id=r["id"],
        type=r["type"],
        status=r["status"],
        severity=r["severity"],
        message=r["message"],
        threshold=threshold,
    )
    _set_optional(msg, "observed", r.get("observed"))
    for c in r.get("classes", []):
        check = pb.ClassCheck(name=c["class"], status=c["status"], threshold=c["threshold"], message=c["message"])
        for field in ("observed", "numerator", "denominator"):
            _set_optional(check, field, c.get(field))
        msg.classes.append(check)
    return msg


def verdict_to_pb(doc: Mapping[str, Any], verdict_json: str) -> pb.Verdict:
    """A verdict JSON document (Verdict.to_dict) as a message, carrying the JSON itself too."""
    model, ds, pol, rt = (
        doc.get("model") or {},
        doc.get("dataset") or {},
        doc.get("policy") or {},
        doc.get("runtime") or {},
    )
    msg = pb.Verdict(
        schema=doc["schema"],
        decision=DECISIONS[doc["verdict"]],
        model=pb.ModelInfo(
            sha256=model.get("sha256") or "", path=model.get("path") or "", bytes=model.get("bytes") or 0
        ),
        dataset=pb.DatasetInfo(
            name=ds.get("name") or "",
            sha256=ds.get("sha256") or "",
            samples=ds.get("samples") or 0,
            classes=ds.get("classes") or [],
        ),
        policy=pb.PolicyInfo(
            name=pol.get("name") or "", sha256=pol.get("sha256") or "", source=pol.get("source") or ""
        ),
        runtime=pb.RuntimeInfo(
            onnxruntime=rt.get("onnxruntime") or "",
            provider=rt.get("provider") or "",
            requested_provider=rt.get("requested_provider") or "",
            session_providers=rt.get("session_providers") or [],
            device=rt.get("device") or "",
            batch_size=rt.get("batch_size") or 0,
        ),
        rules=[_rule_to_pb(r) for r in doc.get("rules", [])],
        started_at=doc.get("started_at") or "",
        duration_s=doc.get("duration_s") or 0.0,
        evaluation_id=doc.get("evaluation_id") or "",
        labels=labels_to_pb(doc.get("labels") or {}),
        verdict_json=verdict_json,
    )
    if doc.get("metrics") is not None:
        msg.metrics.CopyFrom(_metrics_to_pb(doc["metrics"]))
    if doc.get("error") is not None:
        msg.error.CopyFrom(pb.ErrorInfo(type=doc["error"]["type"], message=doc["error"]["message"]))
    return msg


def domain_verdict_to_pb(verdict: Verdict) -> pb.Verdict:
    text = render_json(verdict)
    return verdict_to_pb(json.loads(text), text)


def record_to_pb(record: Any) -> pb.EvaluationRecord:
    """An audit-store EvaluationRecord as a message."""
    msg = pb.EvaluationRecord(
        evaluation_id=record.evaluation_id,
        state=record.state,
        created_at=record.created_at,
        finished_at=record.finished_at or "",
        model_sha256=record.model_sha256,
        dataset=record.dataset,
        policy=record.policy,
        labels=labels_to_pb(record.labels),
    )
    if record.verdict is not None:
        text = json.dumps(record.verdict, indent=2, allow_nan=False) + "\n"
        msg.verdict.CopyFrom(verdict_to_pb(record.verdict, text))
    return msg
