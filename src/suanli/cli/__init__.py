"""The ``suanli`` command line (typer + rich) over the REST API."""
