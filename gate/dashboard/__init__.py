"""The read-only web dashboard of a gate server (``http_listen:``, off by default).

It shows what the audit log holds: the evaluations with filters, each evaluation's HTML
report, per dataset the per-class recall of every model over time, the waivers, and the
replay of a pasted policy over recorded evaluations. It writes nothing. It is served with
the gRPC API's TLS settings and tokens (any role may read; see
:mod:`gate.dashboard.access`), and its pages need nothing from the network: no script,
no CDN, no font (see :mod:`gate.dashboard.server`).
"""

from gate.dashboard.server import Dashboard

__all__ = ["Dashboard"]
