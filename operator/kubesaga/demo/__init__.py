"""``kubesaga demo``: the examples run end to end on a local platform, with live progress.

The demo is a client of the platform like any user: it starts ``hack/testenv.sh`` (or uses the
cluster and broker given with ``KUBESAGA_USE_EXISTING=1``), applies the generated CRD, runs the
operator and one worker per example as ordinary ``kubesaga`` processes, creates the example
sagas and watches them to their final phase. With ``--cluster`` the operator and the workers
are pods instead: the chart installed with Helm on the one-node cluster of ``hack/cluster.sh``.
It never imports kopf or the operator package.
"""

from kubesaga.demo.examples import DemoError, Example, find_repo, load_examples
from kubesaga.demo.runner import run_demo
from kubesaga.demo.sagas import DemoOptions

__all__ = ["DemoError", "DemoOptions", "Example", "find_repo", "load_examples", "run_demo"]
