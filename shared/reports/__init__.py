"""Reports (CONTRACT §9): pure figures from stored frames and alert timelines."""
