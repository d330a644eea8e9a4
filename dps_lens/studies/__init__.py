"""Studies: end-to-end experiments that write their tables under an output directory."""
