"""Whether a model can be deployed, beyond its accuracy: its serving contract (inputs,
outputs, opsets, size, class metadata), what it costs to serve (latency, memory), whether
it answers alike on every execution provider, and whether its predictions look like a
permutation of the classes (a class order mixed up in training or export).

:mod:`gate.deployment.evidence` holds the plain records the policy's deployment rules
judge (:mod:`gate.policy.deployment_rules`); the other modules measure them with ONNX and
ONNX Runtime. :mod:`gate.deployment.steps` is what an evaluation calls. Nothing is
imported here, so that the rules can read the records without loading a runtime.
"""
