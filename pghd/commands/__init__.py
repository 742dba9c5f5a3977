"""Sub-commands of the ``pghd`` command line (I/O lives here, not in the pure core)."""
