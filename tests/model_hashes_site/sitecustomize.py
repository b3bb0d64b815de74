"""Installs tests/model_hashes.py in a process started with this folder on its PYTHONPATH
(the server's worker processes, in the test that counts model hashes)."""

import os

if os.environ.get("GATE_TEST_HASH_LOG"):
    from tests.model_hashes import install

    install()
