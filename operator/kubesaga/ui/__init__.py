"""``kubesaga ui``: a small web app that shows Sagas live, from one Kubernetes watch.

The public API is ``make_app`` (an aiohttp application) and ``serving`` (run it on an address);
``kubesaga.cli.ui_cmd`` wires them to the caller's kubeconfig.
"""

from kubesaga.ui.app import make_app, serving

__all__ = ["make_app", "serving"]
