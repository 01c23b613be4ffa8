"""Linkerd 1's gRPC control-plane APIs: the ``io.linkerd.mesh`` services namerd serves on
its ``io.l5d.mesh`` interface (and the ``io.l5d.mesh`` interpreter calls), and Linkerd
2's ``io.linkerd.proxy.destination`` service (``linkerd2/``).

The ``.proto`` files here are ours, written from the wire format of Linkerd 1.7 (package,
service, method and field names, numbers and types); the ``*_pb2.py`` modules are
generated from them with ``make protos`` (grpcio-tools) and committed, so neither namerd
nor a router needs a compiler. ``tests/test_mesh_protos.py`` checks they are current.

``convert`` turns these messages into the dtab and naming types and back; ``grpc``
serves and calls them over HTTP/2 with grpclib.
"""
