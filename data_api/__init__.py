"""The Data API: the owner's service for epoch blocks, honeypots and S3 URLs (docs/data_api.md).

    python -m data_api --wallet.name owner --wallet.hotkey default      # serve
    python -m data_api honeypot add reference.json                     # owner CLI

Layers, each its own file: ``epochs`` (wall-clock epoch arithmetic),
``universe`` (the zipcodes and their size tiers), ``blocks`` (the pure block
derivation), ``store`` and ``migrations`` (SQLite), ``guards`` (the nonce store
and rate counters shared by every worker through SQLite), ``stores`` (the
store interface the service uses, SQLite or PostgreSQL), ``store_pg`` and
``migrations_pg`` (PostgreSQL, shared by several instances), ``s3`` (presigned
URLs), ``metrics`` (Prometheus and access logs), ``service`` (cached blocks and
honeypot reveals), ``routes`` (the HTTP handlers), ``app`` (assembly),
``server`` (the process). See docs/data_api.md.
"""
