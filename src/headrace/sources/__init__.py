"""Source stages: what reads the data at the start of a pipeline.

One module per kind of source: Python data (``basic``), files and text lines
(``filesystem``, with the shared file handling in ``files``), JSON lines, CSV,
Parquet, tar shards, image folders and SQL queries. Each defines a
:class:`~headrace.engine.stage.Stage` with ``is_source`` set; the functions users call
(``hr.read_csv``, ``hr.range``, ...) wrap one in a pipeline: see
:mod:`headrace.readers`.
"""
