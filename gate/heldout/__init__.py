"""Trusting the held-out set, and judging the model as it will be used.

* :mod:`gate.heldout.label_issues`: confident learning, the per-class-threshold search
  for labels the model's probabilities confidently contradict;
* :mod:`gate.heldout.label_audit`: that search on the candidate's predictions table (and
  the champion's), as the verdict's ``dataset_audit.label_issues``;
* :mod:`gate.heldout.duplicates`: near-duplicate groups and label conflicts inside the
  set, from the perceptual hashes of :mod:`gate.leakage`;
* :mod:`gate.heldout.selective`: coverage, selective accuracy and per-class recall when
  the model abstains below a confidence threshold, and the risk-coverage curve;
* :mod:`gate.heldout.top_k`: top-k accuracy and per-class top-k recall;
* :mod:`gate.heldout.evidence`: what the rules of :mod:`gate.policy.heldout_rules` judge;
* :mod:`gate.heldout.audit`: the evaluation's step that computes it all from the
  predictions tables (no second inference pass);
* :mod:`gate.heldout.issues_file`: the suspects as a CSV file for the set's owner.

This package's ``__init__`` imports nothing, so that a rule importing one computation
does not load the rest (the evaluation step reaches the image decoders).
"""
