"""The subnet's product: each epoch's confirmed records, published as Parquet and queryable.

After a consensus cycle the validator (with ``--dataset.export``) writes the
records the cycle confirmed, with their full fields from the miners' files
and their provenance, to ``--dataset.url`` (``publish.py``); anyone reads it
with DuckDB, pandas, Spark or Athena, or with ``python -m vali_utils.dataset
query "SELECT ..."`` (``query.py``). ``docs/dataset.md`` is the reference:
schema (``schema.py``), layout, guarantees, example queries.
"""
