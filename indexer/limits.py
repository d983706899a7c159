"""What a search request may ask, defined once for Python, the CLI and HTTP alike."""

MAX_K = 1000  # the most hits one search returns
MAX_QUERY_CHARS = 2000  # the longest query
MODES = ("hybrid", "dense", "keyword")  # see indexer.index.Index.search
DEFAULT_MODE = "hybrid"  # chosen by measurement: bench/RESULTS.md, "Search modes"
GROUPS = ("documents", "passages")  # one hit per document, or the best passages
DEFAULT_GROUP = "documents"  # chosen by measurement: bench/RESULTS.md, "Search modes"

