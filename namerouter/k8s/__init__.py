"""Kubernetes API access for the ``io.l5d.k8s`` namer and the k8s transformers:
a thin aiohttp client (list + watch) and a list-then-watch loop for one named object.

kubernetes_asyncio is not used: two calls (list, watch) with Kubernetes' resourceVersion
rules are all we need, and owning the loop lets us test 410/ERROR/EOF handling exactly.
"""
from .client import Gone, K8sApi, K8sApiError, in_cluster_available
from .watch import ObjectWatch

__all__ = ["K8sApi", "K8sApiError", "Gone", "ObjectWatch", "in_cluster_available"]
