from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Provider(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROVIDER_UNSPECIFIED: _ClassVar[Provider]
    PROVIDER_AUTO: _ClassVar[Provider]
    PROVIDER_CUDA: _ClassVar[Provider]
    PROVIDER_CPU: _ClassVar[Provider]

class Decision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_UNSPECIFIED: _ClassVar[Decision]
    PASS: _ClassVar[Decision]
    FAIL: _ClassVar[Decision]
    ERROR: _ClassVar[Decision]

class ListView(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LIST_VIEW_UNSPECIFIED: _ClassVar[ListView]
    LIST_VIEW_SUMMARY: _ClassVar[ListView]
    LIST_VIEW_FULL: _ClassVar[ListView]
PROVIDER_UNSPECIFIED: Provider
PROVIDER_AUTO: Provider
PROVIDER_CUDA: Provider
PROVIDER_CPU: Provider
DECISION_UNSPECIFIED: Decision
PASS: Decision
FAIL: Decision
ERROR: Decision
LIST_VIEW_UNSPECIFIED: ListView
LIST_VIEW_SUMMARY: ListView
LIST_VIEW_FULL: ListView

class ModelChunk(_message.Message):
    __slots__ = ("sha256", "total_size", "filename", "data")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    total_size: int
    filename: str
    data: bytes
    def __init__(self, sha256: _Optional[str] = ..., total_size: _Optional[int] = ..., filename: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class ModelRef(_message.Message):
    __slots__ = ("sha256", "size", "already_present")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    ALREADY_PRESENT_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    size: int
    already_present: bool
    def __init__(self, sha256: _Optional[str] = ..., size: _Optional[int] = ..., already_present: _Optional[bool] = ...) -> None: ...

class Labels(_message.Message):
    __slots__ = ("pipeline_id", "git_sha", "extra")
    class ExtraEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PIPELINE_ID_FIELD_NUMBER: _ClassVar[int]
    GIT_SHA_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    pipeline_id: str
    git_sha: str
    extra: _containers.ScalarMap[str, str]
    def __init__(self, pipeline_id: _Optional[str] = ..., git_sha: _Optional[str] = ..., extra: _Optional[_Mapping[str, str]] = ...) -> None: ...

class EvaluateRequest(_message.Message):
    __slots__ = ("model_sha256", "dataset", "policy_name", "policy_yaml", "labels", "provider", "batch_size", "model_name", "baseline_sha256", "fingerprint", "reference_sha256")
    class ReferenceSha256Entry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODEL_SHA256_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    POLICY_NAME_FIELD_NUMBER: _ClassVar[int]
    POLICY_YAML_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    BASELINE_SHA256_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_SHA256_FIELD_NUMBER: _ClassVar[int]
    model_sha256: str
    dataset: str
    policy_name: str
    policy_yaml: str
    labels: Labels
    provider: Provider
    batch_size: int
    model_name: str
    baseline_sha256: str
    fingerprint: bytes
    reference_sha256: _containers.ScalarMap[str, str]
    def __init__(self, model_sha256: _Optional[str] = ..., dataset: _Optional[str] = ..., policy_name: _Optional[str] = ..., policy_yaml: _Optional[str] = ..., labels: _Optional[_Union[Labels, _Mapping]] = ..., provider: _Optional[_Union[Provider, str]] = ..., batch_size: _Optional[int] = ..., model_name: _Optional[str] = ..., baseline_sha256: _Optional[str] = ..., fingerprint: _Optional[bytes] = ..., reference_sha256: _Optional[_Mapping[str, str]] = ...) -> None: ...

class EvaluateEvent(_message.Message):
    __slots__ = ("accepted", "progress", "verdict")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    accepted: Accepted
    progress: Progress
    verdict: Verdict
    def __init__(self, accepted: _Optional[_Union[Accepted, _Mapping]] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ..., verdict: _Optional[_Union[Verdict, _Mapping]] = ...) -> None: ...

class Accepted(_message.Message):
    __slots__ = ("evaluation_id",)
    EVALUATION_ID_FIELD_NUMBER: _ClassVar[int]
    evaluation_id: str
    def __init__(self, evaluation_id: _Optional[str] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("done", "total")
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    done: int
    total: int
    def __init__(self, done: _Optional[int] = ..., total: _Optional[int] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("sha256", "path", "bytes")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    path: str
    bytes: int
    def __init__(self, sha256: _Optional[str] = ..., path: _Optional[str] = ..., bytes: _Optional[int] = ...) -> None: ...

class DatasetInfo(_message.Message):
    __slots__ = ("name", "sha256", "samples", "classes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    name: str
    sha256: str
    samples: int
    classes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., sha256: _Optional[str] = ..., samples: _Optional[int] = ..., classes: _Optional[_Iterable[str]] = ...) -> None: ...

class PolicyInfo(_message.Message):
    __slots__ = ("name", "sha256", "source")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    sha256: str
    source: str
    def __init__(self, name: _Optional[str] = ..., sha256: _Optional[str] = ..., source: _Optional[str] = ...) -> None: ...

class RuntimeInfo(_message.Message):
    __slots__ = ("onnxruntime", "provider", "requested_provider", "session_providers", "device", "batch_size")
    ONNXRUNTIME_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    SESSION_PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    onnxruntime: str
    provider: str
    requested_provider: str
    session_providers: _containers.RepeatedScalarFieldContainer[str]
    device: str
    batch_size: int
    def __init__(self, onnxruntime: _Optional[str] = ..., provider: _Optional[str] = ..., requested_provider: _Optional[str] = ..., session_providers: _Optional[_Iterable[str]] = ..., device: _Optional[str] = ..., batch_size: _Optional[int] = ...) -> None: ...

class ClassMetrics(_message.Message):
    __slots__ = ("name", "precision", "recall", "f1", "support", "predicted", "tp")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    RECALL_FIELD_NUMBER: _ClassVar[int]
    F1_FIELD_NUMBER: _ClassVar[int]
    SUPPORT_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_FIELD_NUMBER: _ClassVar[int]
    TP_FIELD_NUMBER: _ClassVar[int]
    name: str
    precision: float
    recall: float
    f1: float
    support: int
    predicted: int
    tp: int
    def __init__(self, name: _Optional[str] = ..., precision: _Optional[float] = ..., recall: _Optional[float] = ..., f1: _Optional[float] = ..., support: _Optional[int] = ..., predicted: _Optional[int] = ..., tp: _Optional[int] = ...) -> None: ...

class ConfusionRow(_message.Message):
    __slots__ = ("counts",)
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    counts: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, counts: _Optional[_Iterable[int]] = ...) -> None: ...

class Metrics(_message.Message):
    __slots__ = ("samples", "values", "per_class", "confusion_matrix")
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    PER_CLASS_FIELD_NUMBER: _ClassVar[int]
    CONFUSION_MATRIX_FIELD_NUMBER: _ClassVar[int]
    samples: int
    values: _containers.ScalarMap[str, float]
    per_class: _containers.RepeatedCompositeFieldContainer[ClassMetrics]
    confusion_matrix: _containers.RepeatedCompositeFieldContainer[ConfusionRow]
    def __init__(self, samples: _Optional[int] = ..., values: _Optional[_Mapping[str, float]] = ..., per_class: _Optional[_Iterable[_Union[ClassMetrics, _Mapping]]] = ..., confusion_matrix: _Optional[_Iterable[_Union[ConfusionRow, _Mapping]]] = ...) -> None: ...

class ClassCheck(_message.Message):
    __slots__ = ("name", "status", "observed", "threshold", "numerator", "denominator", "message")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    NUMERATOR_FIELD_NUMBER: _ClassVar[int]
    DENOMINATOR_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    name: str
    status: str
    observed: float
    threshold: float
    numerator: int
    denominator: int
    message: str
    def __init__(self, name: _Optional[str] = ..., status: _Optional[str] = ..., observed: _Optional[float] = ..., threshold: _Optional[float] = ..., numerator: _Optional[int] = ..., denominator: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class RuleResult(_message.Message):
    __slots__ = ("id", "type", "status", "severity", "message", "observed", "threshold", "classes")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: str
    status: str
    severity: str
    message: str
    observed: float
    threshold: _struct_pb2.Struct
    classes: _containers.RepeatedCompositeFieldContainer[ClassCheck]
    def __init__(self, id: _Optional[str] = ..., type: _Optional[str] = ..., status: _Optional[str] = ..., severity: _Optional[str] = ..., message: _Optional[str] = ..., observed: _Optional[float] = ..., threshold: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., classes: _Optional[_Iterable[_Union[ClassCheck, _Mapping]]] = ...) -> None: ...

class ErrorInfo(_message.Message):
    __slots__ = ("type", "message")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    type: str
    message: str
    def __init__(self, type: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class Verdict(_message.Message):
    __slots__ = ("schema", "decision", "model", "dataset", "policy", "runtime", "metrics", "rules", "error", "started_at", "duration_s", "evaluation_id", "labels", "verdict_json", "attestation_json")
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    VERDICT_JSON_FIELD_NUMBER: _ClassVar[int]
    ATTESTATION_JSON_FIELD_NUMBER: _ClassVar[int]
    schema: str
    decision: Decision
    model: ModelInfo
    dataset: DatasetInfo
    policy: PolicyInfo
    runtime: RuntimeInfo
    metrics: Metrics
    rules: _containers.RepeatedCompositeFieldContainer[RuleResult]
    error: ErrorInfo
    started_at: str
    duration_s: float
    evaluation_id: str
    labels: Labels
    verdict_json: str
    attestation_json: str
    def __init__(self, schema: _Optional[str] = ..., decision: _Optional[_Union[Decision, str]] = ..., model: _Optional[_Union[ModelInfo, _Mapping]] = ..., dataset: _Optional[_Union[DatasetInfo, _Mapping]] = ..., policy: _Optional[_Union[PolicyInfo, _Mapping]] = ..., runtime: _Optional[_Union[RuntimeInfo, _Mapping]] = ..., metrics: _Optional[_Union[Metrics, _Mapping]] = ..., rules: _Optional[_Iterable[_Union[RuleResult, _Mapping]]] = ..., error: _Optional[_Union[ErrorInfo, _Mapping]] = ..., started_at: _Optional[str] = ..., duration_s: _Optional[float] = ..., evaluation_id: _Optional[str] = ..., labels: _Optional[_Union[Labels, _Mapping]] = ..., verdict_json: _Optional[str] = ..., attestation_json: _Optional[str] = ...) -> None: ...

class GetVerdictRequest(_message.Message):
    __slots__ = ("evaluation_id",)
    EVALUATION_ID_FIELD_NUMBER: _ClassVar[int]
    evaluation_id: str
    def __init__(self, evaluation_id: _Optional[str] = ...) -> None: ...

class EvaluationRecord(_message.Message):
    __slots__ = ("evaluation_id", "state", "verdict", "created_at", "finished_at", "model_sha256", "dataset", "policy", "labels", "summary")
    EVALUATION_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    MODEL_SHA256_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    evaluation_id: str
    state: str
    verdict: Verdict
    created_at: str
    finished_at: str
    model_sha256: str
    dataset: str
    policy: str
    labels: Labels
    summary: bool
    def __init__(self, evaluation_id: _Optional[str] = ..., state: _Optional[str] = ..., verdict: _Optional[_Union[Verdict, _Mapping]] = ..., created_at: _Optional[str] = ..., finished_at: _Optional[str] = ..., model_sha256: _Optional[str] = ..., dataset: _Optional[str] = ..., policy: _Optional[str] = ..., labels: _Optional[_Union[Labels, _Mapping]] = ..., summary: _Optional[bool] = ...) -> None: ...

class ListVerdictsRequest(_message.Message):
    __slots__ = ("model_sha256", "dataset", "policy", "decision", "limit", "page_token", "view")
    MODEL_SHA256_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    model_sha256: str
    dataset: str
    policy: str
    decision: Decision
    limit: int
    page_token: str
    view: ListView
    def __init__(self, model_sha256: _Optional[str] = ..., dataset: _Optional[str] = ..., policy: _Optional[str] = ..., decision: _Optional[_Union[Decision, str]] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ..., view: _Optional[_Union[ListView, str]] = ...) -> None: ...

class ListVerdictsResponse(_message.Message):
    __slots__ = ("records", "next_page_token")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[EvaluationRecord]
    next_page_token: str
    def __init__(self, records: _Optional[_Iterable[_Union[EvaluationRecord, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListDatasetsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DatasetEntry(_message.Message):
    __slots__ = ("name", "sha256", "samples", "classes", "description", "support", "metadata")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    SUPPORT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    sha256: str
    samples: int
    classes: _containers.RepeatedScalarFieldContainer[str]
    description: str
    support: _containers.RepeatedScalarFieldContainer[int]
    metadata: _containers.RepeatedCompositeFieldContainer[MetadataColumn]
    def __init__(self, name: _Optional[str] = ..., sha256: _Optional[str] = ..., samples: _Optional[int] = ..., classes: _Optional[_Iterable[str]] = ..., description: _Optional[str] = ..., support: _Optional[_Iterable[int]] = ..., metadata: _Optional[_Iterable[_Union[MetadataColumn, _Mapping]]] = ...) -> None: ...

class MetadataColumn(_message.Message):
    __slots__ = ("name", "values", "distinct_values")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    DISTINCT_VALUES_FIELD_NUMBER: _ClassVar[int]
    name: str
    values: _containers.RepeatedCompositeFieldContainer[MetadataValue]
    distinct_values: int
    def __init__(self, name: _Optional[str] = ..., values: _Optional[_Iterable[_Union[MetadataValue, _Mapping]]] = ..., distinct_values: _Optional[int] = ...) -> None: ...

class MetadataValue(_message.Message):
    __slots__ = ("value", "count")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    value: str
    count: int
    def __init__(self, value: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class ListDatasetsResponse(_message.Message):
    __slots__ = ("datasets",)
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    datasets: _containers.RepeatedCompositeFieldContainer[DatasetEntry]
    def __init__(self, datasets: _Optional[_Iterable[_Union[DatasetEntry, _Mapping]]] = ...) -> None: ...

class ListPoliciesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PolicyEntry(_message.Message):
    __slots__ = ("name", "sha256", "description", "rule_ids", "yaml")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    RULE_IDS_FIELD_NUMBER: _ClassVar[int]
    YAML_FIELD_NUMBER: _ClassVar[int]
    name: str
    sha256: str
    description: str
    rule_ids: _containers.RepeatedScalarFieldContainer[str]
    yaml: str
    def __init__(self, name: _Optional[str] = ..., sha256: _Optional[str] = ..., description: _Optional[str] = ..., rule_ids: _Optional[_Iterable[str]] = ..., yaml: _Optional[str] = ...) -> None: ...

class ListPoliciesResponse(_message.Message):
    __slots__ = ("policies",)
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    policies: _containers.RepeatedCompositeFieldContainer[PolicyEntry]
    def __init__(self, policies: _Optional[_Iterable[_Union[PolicyEntry, _Mapping]]] = ...) -> None: ...

class ValidatePolicyRequest(_message.Message):
    __slots__ = ("policy_yaml", "dataset")
    POLICY_YAML_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    policy_yaml: str
    dataset: str
    def __init__(self, policy_yaml: _Optional[str] = ..., dataset: _Optional[str] = ...) -> None: ...

class ValidatePolicyResponse(_message.Message):
    __slots__ = ("valid", "problems", "name", "sha256")
    VALID_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    valid: bool
    problems: _containers.RepeatedScalarFieldContainer[str]
    name: str
    sha256: str
    def __init__(self, valid: _Optional[bool] = ..., problems: _Optional[_Iterable[str]] = ..., name: _Optional[str] = ..., sha256: _Optional[str] = ...) -> None: ...

class ReloadRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReloadResponse(_message.Message):
    __slots__ = ("datasets", "policies")
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    datasets: _containers.RepeatedCompositeFieldContainer[DatasetInfo]
    policies: _containers.RepeatedCompositeFieldContainer[PolicyInfo]
    def __init__(self, datasets: _Optional[_Iterable[_Union[DatasetInfo, _Mapping]]] = ..., policies: _Optional[_Iterable[_Union[PolicyInfo, _Mapping]]] = ...) -> None: ...

class GetPredictionsRequest(_message.Message):
    __slots__ = ("evaluation_id", "format")
    EVALUATION_ID_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    evaluation_id: str
    format: str
    def __init__(self, evaluation_id: _Optional[str] = ..., format: _Optional[str] = ...) -> None: ...

class PredictionsChunk(_message.Message):
    __slots__ = ("total_size", "data", "sha256")
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    total_size: int
    data: bytes
    sha256: str
    def __init__(self, total_size: _Optional[int] = ..., data: _Optional[bytes] = ..., sha256: _Optional[str] = ...) -> None: ...

class ReplayPolicyRequest(_message.Message):
    __slots__ = ("policy_name", "policy_yaml", "dataset", "since", "limit")
    POLICY_NAME_FIELD_NUMBER: _ClassVar[int]
    POLICY_YAML_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    policy_name: str
    policy_yaml: str
    dataset: str
    since: str
    limit: int
    def __init__(self, policy_name: _Optional[str] = ..., policy_yaml: _Optional[str] = ..., dataset: _Optional[str] = ..., since: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ReplayPolicyResponse(_message.Message):
    __slots__ = ("report_json", "evaluations", "now_fail", "now_pass", "not_replayable")
    REPORT_JSON_FIELD_NUMBER: _ClassVar[int]
    EVALUATIONS_FIELD_NUMBER: _ClassVar[int]
    NOW_FAIL_FIELD_NUMBER: _ClassVar[int]
    NOW_PASS_FIELD_NUMBER: _ClassVar[int]
    NOT_REPLAYABLE_FIELD_NUMBER: _ClassVar[int]
    report_json: str
    evaluations: int
    now_fail: int
    now_pass: int
    not_replayable: int
    def __init__(self, report_json: _Optional[str] = ..., evaluations: _Optional[int] = ..., now_fail: _Optional[int] = ..., now_pass: _Optional[int] = ..., not_replayable: _Optional[int] = ...) -> None: ...

class WaiveRequest(_message.Message):
    __slots__ = ("model_sha256", "dataset", "rule_id", "reason", "expires")
    MODEL_SHA256_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    model_sha256: str
    dataset: str
    rule_id: str
    reason: str
    expires: str
    def __init__(self, model_sha256: _Optional[str] = ..., dataset: _Optional[str] = ..., rule_id: _Optional[str] = ..., reason: _Optional[str] = ..., expires: _Optional[str] = ...) -> None: ...

class WaiverInfo(_message.Message):
    __slots__ = ("id", "model_sha256", "dataset", "rule_id", "reason", "expires_at", "granted_by", "granted_at", "revoked_at", "revoked_by", "revoke_reason", "state")
    ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_SHA256_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    GRANTED_BY_FIELD_NUMBER: _ClassVar[int]
    GRANTED_AT_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    REVOKED_BY_FIELD_NUMBER: _ClassVar[int]
    REVOKE_REASON_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    id: str
    model_sha256: str
    dataset: str
    rule_id: str
    reason: str
    expires_at: str
    granted_by: str
    granted_at: str
    revoked_at: str
    revoked_by: str
    revoke_reason: str
    state: str
    def __init__(self, id: _Optional[str] = ..., model_sha256: _Optional[str] = ..., dataset: _Optional[str] = ..., rule_id: _Optional[str] = ..., reason: _Optional[str] = ..., expires_at: _Optional[str] = ..., granted_by: _Optional[str] = ..., granted_at: _Optional[str] = ..., revoked_at: _Optional[str] = ..., revoked_by: _Optional[str] = ..., revoke_reason: _Optional[str] = ..., state: _Optional[str] = ...) -> None: ...

class RevokeWaiverRequest(_message.Message):
    __slots__ = ("waiver_id", "reason")
    WAIVER_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    waiver_id: str
    reason: str
    def __init__(self, waiver_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ListWaiversRequest(_message.Message):
    __slots__ = ("model_sha256", "dataset")
    MODEL_SHA256_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    model_sha256: str
    dataset: str
    def __init__(self, model_sha256: _Optional[str] = ..., dataset: _Optional[str] = ...) -> None: ...

class ListWaiversResponse(_message.Message):
    __slots__ = ("waivers",)
    WAIVERS_FIELD_NUMBER: _ClassVar[int]
    waivers: _containers.RepeatedCompositeFieldContainer[WaiverInfo]
    def __init__(self, waivers: _Optional[_Iterable[_Union[WaiverInfo, _Mapping]]] = ...) -> None: ...
