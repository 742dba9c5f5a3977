"""pghd core: wire contracts, metric catalogue, topics and the ``pghd`` command line."""

__version__ = "0.1.0"
