"""Report steps that read only result files: merge parts, render tables, judge claims, keep references."""
