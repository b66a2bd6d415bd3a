"""Quality benchmarks: the platform against a plain data-scientist script on the same rows."""
