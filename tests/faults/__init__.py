"""Fault tools any test can use: a TCP proxy that misbehaves on demand (``proxy``) and restarts
of the platform's kube-apiserver, etcd and RabbitMQ in place (``platform``)."""
