"""suanli's CPU embedding engine: a BERT sentence-embedding model in numpy behind an
OpenAI-compatible HTTP API, for machines without accelerators.

Run it with ``python -m suanli.engines.cpu_server --model DIR --port PORT``. The model is
in ``suanli.engines.cpu_server.bert`` (``BertEmbedder``), the HTTP side in
``suanli.engines.cpu_server.server`` (``create_app``). This package imports neither, so
that the command line can size numpy's thread pool before numpy loads.
"""
