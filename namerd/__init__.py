"""namerd: the central dtab service (storage, the io.l5d.httpController API, config, CLI).

Run it with ``namerd config.yaml``; manage dtabs with ``namerd dtab ...``. The storage
contract other backends implement is in :mod:`namerd.storage.base`.
"""
