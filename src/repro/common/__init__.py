"""Code shared by every paper: data, metrics, networks, config, results and plumbing."""
