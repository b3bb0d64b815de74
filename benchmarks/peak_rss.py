"""Run a command and print its peak resident set size (MiB) on stderr's last line.

    python benchmarks/peak_rss.py COMMAND [ARGS...]

The same figure as ``/usr/bin/time -v``'s "Maximum resident set size", for machines
without it. Exits with the command's exit code.
"""

import resource
import subprocess
import sys

code = subprocess.call(sys.argv[1:])
peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(f"peak_rss_mib={peak_kib / 1024:.1f}", file=sys.stderr)
sys.exit(code)
