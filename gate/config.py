"""Server configuration: a YAML file, overridden by ``GATE_*`` environment variables,
overridden by command-line flags.

```yaml
listen: 127.0.0.1:50051
data_dir: ./gate-data           # model store, caches, audit database
store: postgresql://gate:PASSWORD@db:5432/gate  # the audit log (default: <data_dir>/audit.sqlite3)
replica_id: gate-0              # this server among replicas sharing the store (default: the host name)
models_dir: /srv/gate-models    # the model store (default: <data_dir>/models); replicas share one
datasets: [datasets/pets.yaml]  # dataset spec files, or directories of them
policies: policies/             # directories (or files) of policies, addressed by `name`
max_model_bytes: 2147483648
max_concurrent_evaluations: 2   # evaluations running at once
max_queued_evaluations: 8       # waiting beyond those; more is RESOURCE_EXHAUSTED
evaluation_timeout_s: 900
max_worker_memory_bytes: null   # address-space limit of each inference worker process
default_provider: auto          # auto | cuda | cpu
metrics_listen: 0.0.0.0:9464     # Prometheus /metrics over HTTP (default: off)
http_listen: 127.0.0.1:8080     # the read-only web dashboard (default: off); same TLS and tokens
log_format: json                # text | json (one object a line, with the evaluation id)
default_batch_size: null         # null: chosen per model (about 24 MiB of input)
engine: local                   # local | ray: shard evaluations over a Ray cluster (needs gate[ray])
ray_address: null               # engine ray: the cluster (auto, ray://HOST:10001, ...); null: a local one
max_message_bytes: 8388608      # largest gRPC request (uploads travel in 1 MiB chunks)
max_concurrent_uploads: 4       # uploads received at once; more is RESOURCE_EXHAUSTED
upload_idle_timeout_s: 30       # an upload with no message for this long ends (DEADLINE_EXCEEDED)
upload_timeout_s: 3600          # no upload lasts longer
upload_min_bytes_per_s: 65536   # past its first upload_idle_timeout_s, an upload slower than this ends
tls_cert: certs/server.pem      # PEM chain the server presents; with tls_key: TLS (default: off)
tls_key: certs/server.key
tls_client_ca: certs/ca.pem     # set: client certificates signed by this CA are required (mutual TLS)
tokens:                         # bearer tokens, by SHA-256 only (default: none, authentication off)
  - {name: ci-pipeline, sha256: <64 hex digits from `gate token new`>, roles: [submit]}
signing_key: keys/gate.pem      # Ed25519 key (PEM PKCS #8) that signs every verdict; must exist
                                # (default: <data_dir>/signing/ed25519.pem, generated on first start)
```

Relative paths in a file are relative to that file; in the environment (e.g.
``GATE_DATA_DIR=/srv/gate``, ``GATE_DATASETS='["/data/pets.yaml"]'``) and on the command
line they are relative to the working directory. With no file, :func:`default_config`
gives the embedded defaults: the demo held-out set and the shipped policies.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from gate.errors import RequestError
from gate.providers import Provider
from gate.store import check_replica_id, parse_target, sqlite_path

PACKAGE_ROOT = Path(__file__).resolve().parent
DEFAULT_MAX_MESSAGE_BYTES = 8 << 20  # upload chunks are 1 MiB; inline policies at most 1 MiB
REPLY_SIZE_FACTOR = 4  # replies (a page of verdicts with their JSON) may be larger than requests

# admin may do everything submit may, and Reload; submit and admin may also do what read
# may: look at the web dashboard (a read token may do nothing else)
Role = Literal["submit", "admin", "read"]


class ConfigError(RequestError):
    """The server configuration is invalid."""


def shipped_policies_dir() -> Path:
    """The policies that ship with gate: the source tree's ``policies/``, or the copy an
    installed wheel puts under ``<prefix>/share/gate/policies``."""
    for candidate in (PACKAGE_ROOT.parent / "policies", Path(sys.prefix) / "share" / "gate" / "policies"):
        if candidate.is_dir():
            return candidate
    raise ConfigError("the shipped policies are missing (looked in the source tree and <prefix>/share/gate/policies)")


class TokenEntry(BaseModel):
    """One bearer token the server accepts, known only by the SHA-256 of its text."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)  # who holds it; logged, never the token
    sha256: str
    roles: tuple[Role, ...] = Field(min_length=1)

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, value: str) -> str:
        if not re.fullmatch(r"[0-9a-fA-F]{64}", value):
            raise ValueError("it should be the 64 hex digits of the token's SHA-256 (`gate token hash`)")
        return value.lower()


class ServerConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATE_", extra="forbid", frozen=True)

    listen: str = "127.0.0.1:50051"
    data_dir: Path = Path("gate-data")
    # the audit log: a file path, sqlite:///PATH or postgresql://...; None: <data_dir>/audit.sqlite3
    store: str | None = None
    replica_id: str | None = None  # recorded with each evaluation; None: the host name
    models_dir: Path | None = None  # the content-addressed model store; None: <data_dir>/models
    datasets: list[Path] = Field(default_factory=list)
    policies: list[Path] = Field(default_factory=list)
    max_model_bytes: int = Field(default=2 << 30, ge=1)
    max_concurrent_evaluations: int = Field(default=2, ge=1, le=256)
    max_queued_evaluations: int = Field(default=8, ge=0, le=10_000)
    evaluation_timeout_s: float = Field(default=900.0, gt=0)
    default_provider: Provider = "auto"
    max_worker_memory_bytes: int | None = Field(default=None, ge=1 << 26)  # per worker process; None: no limit
    metrics_listen: str | None = None  # HOST:PORT of the Prometheus /metrics endpoint; None: off
    http_listen: str | None = None  # HOST:PORT of the read-only web dashboard (gate.dashboard); None: off
    log_format: Literal["text", "json"] = "text"
    default_batch_size: int | None = Field(default=None, ge=1)  # None: chosen per model
    engine: Literal["local", "ray"] = "local"  # ray: sharded over a Ray cluster (gate.engines.ray_engine)
    ray_address: str | None = None  # engine ray: the cluster to connect to; None: start a local one
    # an upload chunk (1 MiB) and its framing must fit
    max_message_bytes: int = Field(default=DEFAULT_MAX_MESSAGE_BYTES, ge=2 << 20)
    # each upload holds an RPC thread while it streams: bounded, and ended when it stalls or crawls
    max_concurrent_uploads: int = Field(default=4, ge=1, le=256)
    upload_idle_timeout_s: float = Field(default=30.0, gt=0)
    upload_timeout_s: float = Field(default=3600.0, gt=0)
    upload_min_bytes_per_s: int = Field(default=64 << 10, ge=0)
    tls_cert: Path | None = None  # PEM certificate chain; with tls_key the server speaks only TLS
    tls_key: Path | None = None
    tls_client_ca: Path | None = None  # PEM CA bundle; set: clients must present a certificate it signed
    tokens: list[TokenEntry] = Field(default_factory=list)  # empty: no authentication (loopback/demo only)
    # the Ed25519 key that signs verdicts (gate.attest); None: signing_key_file, generated on first start
    signing_key: Path | None = None

    @field_validator("datasets", "policies", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str | Path) else value

    @field_validator("listen", "metrics_listen", "http_listen")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is None:
            return value
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"listen={value!r} is not valid; it should be HOST:PORT (port 0 picks a free one)")
        return value

    @field_validator("store")
    @classmethod
    def _store_target(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parse_target(value)  # ValueError, without the password, for what is not a store
        return value.strip()

    @field_validator("replica_id")
    @classmethod
    def _replica(cls, value: str | None) -> str | None:
        return None if value is None or not value.strip() else check_replica_id(value.strip())

    @model_validator(mode="after")
    def _consistent_security(self) -> ServerConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: set both for TLS, or neither")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("tls_client_ca (mutual TLS) needs tls_cert and tls_key")
        # a name identifies its holder in the log; one token under two names would not
        for attribute in ("name", "sha256"):
            values = [getattr(t, attribute) for t in self.tokens]
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                raise ValueError(f"tokens: each {attribute} may appear once; repeated: {', '.join(repeated)}")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # load_config merges file, environment and flags itself, in that order
        return (init_settings,)

    @property
    def audit_db(self) -> Path:
        return self.data_dir / "audit.sqlite3"

    @property
    def model_dir(self) -> Path:
        return self.models_dir if self.models_dir is not None else self.data_dir / "models"

    @property
    def store_target(self) -> str:
        """Where the audit log is, for :func:`gate.store.open_store`."""
        return self.store if self.store is not None else str(self.audit_db)

    @property
    def replica(self) -> str:
        """This server's replica id: ``replica_id``, else the host name."""
        if self.replica_id is not None:
            return self.replica_id
        # on Kubernetes, the pod's name; characters a replica id may not hold become '-'
        host = re.sub(r"[^A-Za-z0-9._:@-]", "-", socket.gethostname()).lstrip("._:@-")[:128]
        return host or "gate"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @property
    def signing_key_file(self) -> Path:
        """The key that signs verdicts: ``signing_key``, else one kept in the data directory."""
        return self.signing_key if self.signing_key is not None else self.data_dir / "signing" / "ed25519.pem"


_PATH_KEYS = ("data_dir", "datasets", "policies", "tls_cert", "tls_key", "tls_client_ca", "signing_key", "models_dir")


def _resolve_paths(values: dict[str, Any], base: Path) -> dict[str, Any]:
    out = dict(values)
    for key in _PATH_KEYS:
        if key not in out or out[key] is None:
            continue
        raw = out[key]
        items = raw if isinstance(raw, list) else [raw]
        resolved = [str(base / p) if not os.path.isabs(str(p)) else str(p) for p in items]
        out[key] = resolved if isinstance(raw, list) else resolved[0]
    if isinstance(out.get("store"), str):
        out["store"] = _resolve_store(out["store"], base)
    return out


def _resolve_store(store: str, base: Path) -> str:
    """A plain relative file path is relative to the file, like the other paths; URLs
    (``sqlite:///ABSOLUTE``, ``postgresql://``) are left as they are."""
    try:
        plain = store.strip() != "" and sqlite_path(store) == Path(store)
    except ValueError:
        return store  # not a store at all: validation says so
    return str(base / store) if plain and not Path(store).is_absolute() else store


def _build(values: dict[str, Any], source: str) -> ServerConfig:
    try:
        return ServerConfig(**values)
    except ValidationError as e:
        problems = [f"{'.'.join(str(x) for x in err['loc']) or 'config'}: {err['msg']}" for err in e.errors()]
        raise ConfigError(f"invalid configuration {source}:\n" + "\n".join(f"  - {p}" for p in problems)) from e


def load_config(path: str | os.PathLike[str] | None = None, **overrides: Any) -> ServerConfig:
    """The configuration from ``path`` (or the embedded defaults), the environment and
    ``overrides`` (command-line flags; None values are ignored)."""
    if path is None:
        values = default_values(overrides.get("data_dir"))
        source = "(embedded defaults)"
    else:
        file = Path(path)
        try:
            loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise ConfigError(f"configuration file not found: {file}") from e
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            raise ConfigError(f"cannot read configuration {file}: {e}") from e
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"configuration {file} must be a mapping of settings")
        values = _resolve_paths(loaded, file.resolve().parent)
        source = str(file)
    environment = EnvSettingsSource(ServerConfig)()  # GATE_* variables, parsed
    flags = {k: v for k, v in overrides.items() if v is not None}
    return _build({**values, **environment, **flags}, source)


def default_values(data_dir: Path | None = None) -> dict[str, Any]:
    """The embedded defaults: data under ./gate-data, the demo held-out set (built there
    by ``gate demo`` or on first ``gate serve``), and the shipped policies."""
    root = Path(data_dir) if data_dir is not None else Path("gate-data")
    return {
        "data_dir": str(root),
        "datasets": [str(root / "demo" / "heldout.yaml")],
        "policies": [str(shipped_policies_dir())],
    }
